"""Storage faults: a full disk, a runs.db that is not ours, stale sockets, long paths.

A full disk is simulated with SQLite's `max_page_count` on takod's own writer
connection, set through the SQLite backend's committer (the only code that writes on it).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import tako
from tako import takod
from tako.takod.server import MAX_SOCKET_PATH, supervisor_pid
from tako.takod.storage.sqlite import SqliteBackend
from tests.conftest import App, TakodProcess, eventually, running, status_of

pytestmark = pytest.mark.slow

WORKFLOWS = """
    from tako import workflow

    @workflow
    async def echo(payload, step):
        return payload

    @workflow
    async def hold(payload, step):
        went = await step.wait_for("go")
        return [payload, went]

    @workflow
    async def big(payload, step):
        await step.wait_for("release")
        return "y" * 300_000
"""
NO_LIMIT = 1_073_741_823  # SQLite's default max_page_count


@pytest.fixture
def runtime() -> str:
    return "asyncio"  # these tests are about takod's storage, not the worker's event loop


def sqlite_backend(sup: takod.Supervisor) -> SqliteBackend:
    assert isinstance(sup.backend, SqliteBackend)
    return sup.backend


async def sql(sup: takod.Supervisor, query: str) -> Any:
    """One statement on takod's writer connection, in the committer's next transaction."""
    conn = sqlite_backend(sup)._conn
    return await sup.backend.write(lambda _: conn.execute(query).fetchone()[0])


async def disk_full_after(sup: takod.Supervisor, pages: int) -> None:
    """From now on runs.db may grow by `pages` pages only."""
    count = await sql(sup, "PRAGMA page_count")
    assert await sql(sup, f"PRAGMA max_page_count = {count + pages}") == count + pages


async def all_status(client: tako.AsyncClient, run_ids: list[str], status: str) -> bool:
    for run_id in run_ids:
        if (await client.get_run(run_id)).status != status:
            return False
    return True


async def test_a_full_disk_refuses_writes_keeps_reads_and_loses_nothing(app: App) -> None:
    """Runs with 16 KiB payloads are started until the disk is full: the refusal is a
    `StorageError` (code `storage`) and stores nothing; reads keep answering; the
    database stays intact; once space is back new runs complete, the runs parked
    before the fault complete, and every run accepted is there with its payload."""
    app.write("w.py", WORKFLOWS)
    async with running(app) as sup:
        client = app.client()
        # before the fault: runs parked on a signal, and a delayed run
        held = [await client.start("hold", {"n": n}) for n in range(3)]
        await eventually(lambda: all_status(client, held, "waiting"), what="runs to park")
        later = await client.start("echo", {"later": True}, delay=3600)
        assert await client.result(await client.start("echo", "before"), timeout=30) == "before"

        await disk_full_after(sup, 16)
        accepted: dict[str, Any] = {}
        pad = "x" * 16_384
        with pytest.raises(tako.StorageError) as refused:
            for n in range(200):  # delayed: nothing but these inserts touches runs.db
                payload = {"n": n, "pad": pad}
                accepted[await client.start("echo", payload, run_id=f"fill-{n}", delay=3600)] = (
                    payload
                )
        assert refused.value.code == "storage"
        assert len(accepted) < 200, "the disk never filled up"
        # the refused start left nothing behind
        with pytest.raises(tako.RunNotFound):
            await client.get_run(f"fill-{len(accepted)}")
        # a second refusal is the same refusal, not a crash or a hang
        with pytest.raises(tako.StorageError):
            await client.start("echo", {"pad": pad})

        # reads keep answering while the disk is full
        status = await client.status()
        assert status["supervisor"] == "running"
        assert status["runs"].get("waiting") == 3
        assert status["runs"].get("pending") == len(accepted) + 1
        listed = {run.run_id for run in await client.list_runs(limit=10_000)}
        assert listed >= set(accepted) | set(held) | {later}
        for run_id, payload in accepted.items():
            assert (await client.get_run(run_id)).payload == payload
        assert await sql(sup, "PRAGMA integrity_check") == "ok"

        # the fault clears: new runs start and complete
        await sql(sup, f"PRAGMA max_page_count = {NO_LIMIT}")
        after = {"after": pad}
        assert await client.result(await client.start("echo", after), timeout=30) == after
        # the runs started before the fault resume and complete
        assert (await client.signal("go", "after the fault")).delivered == 3
        for n, run_id in enumerate(held):
            assert await client.result(run_id, timeout=30) == [{"n": n}, "after the fault"]
        # and those accepted as the disk filled are all there, intact, still due later
        for run_id, payload in [*accepted.items(), (later, {"later": True})]:
            run = await client.get_run(run_id)
            assert (run.status, run.payload) == ("pending", payload)
        assert await sql(sup, "PRAGMA integrity_check") == "ok"
        client.close()


async def test_a_full_disk_is_reported_as_a_full_disk(app: App) -> None:
    """docs/protocol.md: `storage` says the disk is full when it is."""
    app.write("w.py", WORKFLOWS)
    async with running(app) as sup:
        client = app.client()
        await disk_full_after(sup, 2)
        try:
            await client.start("echo", "x" * 100_000)
        except tako.StorageError as exc:
            refused: Exception | None = exc
        else:
            refused = None
        client.close()
    assert isinstance(refused, tako.StorageError), "the write was not refused"
    assert "full" in refused.message, refused.message


async def test_a_result_refused_by_a_full_disk_is_written_once_space_is_back(app: App) -> None:
    """A run whose start was acknowledged is never lost: if its result meets a full
    disk, it completes once space is back (here: within 10 s of that)."""
    app.write("w.py", WORKFLOWS)
    async with running(app) as sup:
        client = app.client()
        run_id = await client.start("big")
        await eventually(lambda: all_status(client, [run_id], "waiting"), what="the run to park")
        await disk_full_after(sup, 10)  # room for the signal, not for a 300 kB result
        refusals: list[BaseException] = []
        tx = sqlite_backend(sup).tx
        finish: Callable[..., Any] = tx.finish

        def watched_finish(*args: Any, **kwargs: Any) -> Any:
            try:
                return finish(*args, **kwargs)
            except BaseException as exc:
                refusals.append(exc)
                raise

        tx.finish = watched_finish  # type: ignore[method-assign]
        assert (await client.signal("release")).delivered == 1
        await eventually(lambda: refusals, what="the run's result to meet the full disk")
        await sql(sup, f"PRAGMA max_page_count = {NO_LIMIT}")
        run = await eventually(
            lambda: status_of(client, run_id, "completed", "failed", "cancelled"),
            timeout=10,
            what="the run to finish once the disk recovered",
        )
        client.close()
    assert run.status == "completed", run.status
    assert run.result == "y" * 300_000


def random_file(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(64 * 1024))


def foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.executemany("INSERT INTO invoices (total) VALUES (?)", [(n * 1.5,) for n in range(100)])
    conn.commit()
    conn.close()


def newer_tako(path: Path) -> None:
    """A tako database from a future version: ours, but a schema this takod does not know."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA application_id = {0x74616B6F}")
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (random_file, "not a tako database"),
        (foreign_sqlite, "not a usable tako database"),
        (newer_tako, "newer"),
    ],
    ids=["random-bytes", "foreign-sqlite", "newer-tako"],
)
async def test_a_runs_db_that_is_not_ours_is_refused_and_left_untouched(
    app: App, make: Callable[[Path], None], says: str
) -> None:
    """takod refuses to start on a runs.db it did not create (or cannot read), says
    which file and why, and leaves it byte for byte as it was."""
    app.write("w.py", WORKFLOWS)
    db = app.data_dir / "apps" / "testapp" / "runs.db"
    db.parent.mkdir(parents=True)
    make(db)
    before = db.read_bytes()
    neighbours = sorted(os.listdir(db.parent))
    with pytest.raises(BaseException) as failed:  # the startup error, dug out below
        async with running(app):
            pass
    error = takod.startup_error(failed.value)
    assert isinstance(error, takod.StoreError), failed.value
    assert str(db) in error.message and says in error.message, error.message
    assert db.read_bytes() == before, "takod changed a file that is not its database"
    assert sorted(os.listdir(db.parent)) == neighbours  # no -wal, -shm or -journal left
    assert not app.socket.exists()
    assert supervisor_pid(app.data_dir) is None  # the data dir lock was let go


async def test_takod_on_a_foreign_runs_db_exits_1_and_says_why(app: App) -> None:
    """The same as a process: exit code 1 and one clear line on stderr, no traceback."""
    app.write("w.py", WORKFLOWS)
    db = app.data_dir / "apps" / "testapp" / "runs.db"
    db.parent.mkdir(parents=True)
    random_file(db)
    before = db.read_bytes()
    argv = [sys.executable, "-m", "tako.takod", str(app.dir), "--data-dir", str(app.data_dir)]
    with trio.fail_after(30):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.startswith("takod: ") and str(db) in err and "not a tako database" in err, err
    assert "Traceback" not in err, err
    assert db.read_bytes() == before


async def test_a_stale_socket_is_replaced_and_a_second_takod_names_the_first(app: App) -> None:
    """kill -9 leaves the socket file; the next takod replaces it. A second takod on
    the same data dir exits 1 at once, naming the pid of the one running."""
    app.write("w.py", WORKFLOWS)
    killed, live, second = TakodProcess(app), TakodProcess(app), TakodProcess(app)
    try:
        await killed.start()
        killed.kill(signal.SIGKILL)
        assert await killed.wait() == -signal.SIGKILL
        assert app.socket.exists(), "kill -9 should leave the socket file behind"
        with pytest.raises(tako.SupervisorUnavailable):
            await app.client().status()

        await live.start()  # replaces the stale socket
        assert live.proc is not None
        client = app.client()
        assert (await client.status())["pid"] == live.proc.pid
        assert await client.result(await client.start("echo", "alive"), timeout=30) == "alive"

        began = trio.current_time()
        await second.start()  # `status` answers at once: from the live takod
        assert await second.wait(timeout=20) == 1
        assert trio.current_time() - began < 15, "the second takod did not fail at once"
        log = (app.dir / "takod.log").read_text()
        assert f"pid {live.proc.pid}" in log and "already running" in log, log
        # the first one never noticed
        assert (await client.status())["pid"] == live.proc.pid
        client.close()
    finally:
        for proc in (killed, live, second):
            proc.stop()


async def test_a_socket_path_too_long_for_the_os_is_refused_with_advice(app: App) -> None:
    """A socket path over 107 bytes: `SocketError` naming the path and suggesting a
    shorter --data-dir; the data dir lock is let go."""
    app.write("w.py", WORKFLOWS)
    root = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))
    data_dir = root / ("d" * 100)
    socket_path = data_dir / "tako.sock"
    assert len(os.fsencode(socket_path)) > MAX_SOCKET_PATH
    try:
        with pytest.raises(BaseException) as failed:  # the startup error, dug out below
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: takod.serve(app.dir, data_dir, task_status=task_status)
                )
        error = takod.startup_error(failed.value)
        assert isinstance(error, takod.SocketError), failed.value
        assert str(socket_path) in error.message, error.message
        assert "--data-dir" in error.message, error.message
        assert not socket_path.exists()
        assert supervisor_pid(data_dir) is None
    finally:
        for path in sorted(root.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        root.rmdir()


NAPPER = """
    from tako import workflow

    @workflow
    async def napper(payload, step):
        await step.sleep("nap", "300ms")
        return "rested"
"""


@pytest.mark.parametrize("write", ["wake_due", "claim"])
async def test_a_timer_or_claim_refused_by_a_full_disk_is_retried(app: App, write: str) -> None:
    """The scheduler's and the pool's own writes meet a full disk: takod stays up, and
    the run resumes once a retry gets through (the first attempt is refused here)."""
    app.write("napper.py", NAPPER)
    async with running(app) as sup:
        client = app.client()
        run_id = await client.start("napper")
        await eventually(lambda: all_status(client, [run_id], "sleeping"), what="the nap")
        tx = sqlite_backend(sup).tx
        real = getattr(tx, write)
        refused: list[str] = []

        def full_once(*args: Any, **kwargs: Any) -> Any:
            if not refused:
                refused.append(write)
                raise tako.StorageError("the disk holding runs.db is full (simulated)")
            return real(*args, **kwargs)

        setattr(tx, write, full_once)
        assert await client.result(run_id, timeout=15) == "rested"
        assert refused == [write]
        assert (await client.status())["supervisor"] == "running"
