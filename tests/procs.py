"""What the OS says about our processes: the tests check it, not only takod's own count."""

from __future__ import annotations

import os
from pathlib import Path


def worker_pids(app_dir: Path) -> list[int]:
    """Live (not zombie) worker processes of this app, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
            state = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"worker_runtime" in cmdline and str(app_dir).encode() in cmdline and state != "Z":
            pids.append(int(entry))
    return pids
