"""Where an app keeps its data and where clients find the supervisor's socket (SPEC §2)."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "tako.sock"


def resolve_data_dir(
    app_dir: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None = None
) -> Path:
    """`--data-dir`, else `$TAKO_DATA_DIR`, else `<app_dir>/.tako`."""
    if data_dir:
        return Path(data_dir).absolute()
    env = os.environ.get("TAKO_DATA_DIR")
    if env:
        return Path(env).absolute()
    return Path(app_dir or ".").absolute() / ".tako"


def resolve_socket(
    socket: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """`--socket`, else `$TAKO_SOCKET`, else the socket in the data dir of the current folder."""
    if socket:
        return Path(socket).absolute()
    env = os.environ.get("TAKO_SOCKET")
    if env:
        return Path(env).absolute()
    return resolve_data_dir(Path.cwd(), data_dir) / SOCKET_NAME
