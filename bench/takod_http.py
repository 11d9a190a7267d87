"""`python -m bench.takod_http APP_DIR --data-dir D --http HOST:PORT`: takod and its HTTP app.

The supervisor and the HTTP server exactly as `tako dev` runs them (`takod.serve`,
then `tako.http._serve.host` in the same trio nursery: Hypercorn's trio worker on
takod's event loop, talking to takod through its socket), without `tako dev`'s
console, which prints a line per run event: at thousands of starts a second that
would measure terminal output, and the socket figures it is compared with come from
the same process. Prints `http URL` once serving; SIGTERM stops it as `python -m
takod` stops.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

import takod
from tako.http._serve import host


async def _run(app_dir: str, data_dir: str | None, listen: str) -> None:
    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(
            lambda task_status: takod.serve(app_dir, data_dir, task_status=task_status)
        )
        url = await host(nursery, supervisor, listen)
        print(f"http {url}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                await supervisor.drain()
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.takod_http")
    parser.add_argument("app_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--http", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    trio.run(_run, args.app_dir, args.data_dir, args.http)
    return 0


if __name__ == "__main__":
    sys.exit(main())
