"""`python -m tako.takod APP_DIR [--data-dir D] [--http HOST:PORT]`: the supervisor without
`tako dev`'s console (no event lines, no reload); with `--http`, also the HTTP app, whose
address it prints as `http <url>` (port 0: any free port).

SIGTERM or SIGINT stops it gracefully: nothing new is assigned, steps in
flight get `[workers] shutdown_grace` to finish, then it exits 0. Exit 1
when another supervisor holds the data dir, 2 on a bad tako.toml.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from tako import takod


async def _run(app_dir: str, data_dir: str | None, http: str | None) -> None:
    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(
            lambda task_status: takod.serve(app_dir, data_dir, task_status=task_status)
        )
        if http is not None:
            from tako.http._serve import host

            print(f"http {await host(nursery, supervisor, http)}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                await supervisor.drain()
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tako.takod")
    parser.add_argument("app_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--http", metavar="HOST:PORT", help="also serve the HTTP app here")
    args = parser.parse_args(argv)
    try:
        trio.run(_run, args.app_dir, args.data_dir, args.http)
    except BaseException as exc:
        error = takod.startup_error(exc)
        if error is None:
            raise
        print(f"takod: {error}", file=sys.stderr)
        return 2 if isinstance(error, takod.ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
