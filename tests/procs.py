"""What the OS says about our processes: the tests check it, not only takod's own count."""

from __future__ import annotations

import os
from pathlib import Path


def worker_pids(app_dir: Path) -> list[int]:
    """Live (not zombie) worker processes of this app, from /proc."""
    return _pids(b"tako.worker_runtime", str(app_dir).encode())


def http_pids(socket: Path) -> list[int]:
    """Live HTTP server processes (`python -m tako.http`) serving the supervisor at `socket`."""
    return _pids(b"tako.http", str(socket).encode())


def _pids(*words: bytes) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
            state = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if all(word in cmdline for word in words) and state != "Z":
            pids.append(int(entry))
    return pids
