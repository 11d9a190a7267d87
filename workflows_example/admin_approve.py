"""Approve or reject a held order from Python, as a web handler would.

    python admin_approve.py 42 --by alice
    python admin_approve.py 42 --by bob --reject

`tako.signal()` finds takod's socket by `$TAKO_SOCKET`, else
`<data dir>/tako.sock` with the data dir `$TAKO_DATA_DIR` or `.tako` in the
current folder: run this from the app folder, or pass `--socket`.
"""

from __future__ import annotations

import argparse
import os
import sys

import tako


def decide(order_id: int, by: str, *, approved: bool) -> tako.SignalResult:
    """What the Approve and Reject buttons of an admin page would call."""
    return tako.signal(f"approval:order-{order_id}", {"approved": approved, "by": by})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("order_id", type=int)
    parser.add_argument("--by", required=True, help="who decides")
    parser.add_argument("--reject", action="store_true")
    parser.add_argument("--socket", help="takod's socket (default: see above)")
    args = parser.parse_args()
    if args.socket:
        os.environ["TAKO_SOCKET"] = args.socket
    try:
        result = decide(args.order_id, args.by, approved=not args.reject)
    except tako.SupervisorUnavailable as exc:
        sys.exit(f"{exc}")
    # delivered=1: a waiting run took it. kept=True: nobody waits yet; the first
    # run that waits on this order's approval gets it (within 7 days).
    print(result)


if __name__ == "__main__":
    main()
