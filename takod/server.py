"""The unix socket and the data dir lock: how clients reach exactly one supervisor.

The lock (`<data_dir>/takod.lock`, flock) makes a second supervisor on the
same data dir fail at once, naming the pid of the first. The kernel drops
the lock when its holder dies, even by kill -9, so a socket left by a killed
supervisor is known to be stale and replaced.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import trio

from tako._errors import TakoError

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, including the NUL


class AlreadyRunning(TakoError):
    """Another supervisor already serves this data dir."""

    code = "already_running"

    def __init__(self, message: str | None = None, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class SocketError(TakoError):
    """The supervisor's socket cannot be created."""

    code = "socket"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "takod.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = read_pid(self.path)
            raise AlreadyRunning(
                f"a tako supervisor (pid {pid}) is already running for {self.path.parent}; "
                "stop it first, or use another --data-dir",
                pid=pid,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_pid(lock_path: Path) -> int | None:
    try:
        return int(lock_path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def supervisor_pid(data_dir: Path) -> int | None:
    """The pid of the supervisor holding this data dir, or None when none does."""
    path = data_dir / "takod.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_pid(path)
    finally:
        os.close(fd)
    return None


async def open_listener(path: Path) -> trio.SocketListener:
    """Bind the socket (mode 0600), replacing a stale one.

    Only call this while holding the data dir lock: then any socket file
    already there was left by a supervisor that is gone."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketError(
            f"socket path {path} is {len(os.fsencode(path))} bytes, over the OS limit of "
            f"{MAX_SOCKET_PATH}; use a shorter --data-dir or --socket"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    return trio.SocketListener(sock)
