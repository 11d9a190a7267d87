"""`python -m tako.worker_runtime`: a worker process (started by takod), or `--describe APP_DIR`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tako.worker_runtime")
    parser.add_argument("app_dir", type=Path)
    parser.add_argument("--describe", action="store_true", help="print the registry as JSON")
    parser.add_argument("--fd", type=int, help="the worker's end of the socket pair")
    parser.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--idle-timeout", type=float, default=3.0)
    parser.add_argument("--max-payload", type=int, default=1024 * 1024)
    parser.add_argument("--lease", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.describe:
        from tako.worker_runtime.loader import describe

        # stdout is the registry's alone: user code that writes to fd 1 while it is
        # imported (or later, from a thread) writes to stderr instead
        registry_out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        registry_out.write(msgspec.json.encode(describe(args.app_dir)) + b"\n")
        registry_out.close()
        return
    if args.fd is None:
        parser.error("--fd is required unless --describe is given")
    from tako.worker_runtime.main import run_worker

    run_worker(
        args.app_dir,
        fd=args.fd,
        runtime=args.runtime,
        idle_timeout=args.idle_timeout,
        max_payload=args.max_payload,
        lease=args.lease,
    )


if __name__ == "__main__":
    main()
