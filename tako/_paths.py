"""Where an app keeps its data and where clients find the supervisor's socket.

A supervisor keeps its data in `<app_dir>/.tako` unless told otherwise. A
client run from the app folder, or from any folder below it, finds that
folder as git finds `.git/`: the nearest folder up from here that holds a
`.tako/` folder, a `tako.toml` or a `workflows/` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "tako.sock"
DEFAULT_LISTEN = "127.0.0.1:8787"  # the HTTP app, when [http] listen is not set


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


APP_MARKERS = (".tako", "tako.toml", "workflows")


def find_app_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The app folder a client in `start` (default: here) means: the nearest folder up from
    it that holds one of APP_MARKERS; `start` itself when none does."""
    here = Path(start or ".").absolute()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in APP_MARKERS):
            return folder
    return here


def resolve_socket(
    socket: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """`--socket`, else `$TAKO_SOCKET`, else the socket in the data dir of the app we are in."""
    if socket:
        return Path(socket).absolute()
    env = os.environ.get("TAKO_SOCKET")
    if env:
        return Path(env).absolute()
    return resolve_data_dir(find_app_dir(), data_dir) / SOCKET_NAME
