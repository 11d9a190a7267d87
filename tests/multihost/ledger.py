"""What ran where, read back: the effects log step bodies append to, and the runs' stored steps.

Every step body appends `<host> <run> <key> [<time>] <token>` to one log before
it returns the token (a value no other execution can produce: host, pid, random).
The log is the ground truth of what ran: a step ran once exactly when the log holds
one line for it, and the step's stored result is that line's token (so the stored
result came from that execution, not from one the log missed). Hosts write the
same file (the app folder is shared, as a network file system would be; one short
O_APPEND write is atomic), so no execution on any host escapes the count.

`ACKED_CHAIN` also appends a line to a second log (`<effects>.acks`) each time the
workflow gets a step's result back, i.e. once the step's checkpoint is stored: an
execution of that step begun after its first ack is a finished step run again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import trio

import tako
from tests.conftest import App, eventually
from tests.multihost.harness import Host

ACKED_CHAIN = """
    import os, random, time
    from tako import workflow

    HOST = os.environ["TAKO_TEST_HOST"]

    def note(path, run_id, key, token):
        with open(path, "a") as f:
            f.write(f"{HOST} {run_id} {key} {time.time()} {token}\\n")

    def record(run_id, key, pause):
        token = f"{HOST}/{os.getpid()}/{random.random()}"
        note(EFFECTS, run_id, key, token)
        time.sleep(pause)  # long enough that a fault finds steps in flight
        return token

    @workflow
    async def chain(payload, step):
        for i in range(payload["steps"]):
            if i == payload.get("wait_at"):
                await step.wait_for("go")
            key = f"s{i}"
            token = await step.run(key, lambda: record(step.run_id, key, payload["pause"]))
            note(EFFECTS + ".acks", step.run_id, key, token)
        return "done"
"""


class Execution:
    """One line of the effects log: a step body that ran, where, and what it returned."""

    def __init__(self, line: str) -> None:
        fields = line.split()
        self.host, self.run, self.key, self.token = fields[0], fields[1], fields[2], fields[-1]
        self.at = float(fields[3]) if len(fields) == 5 else 0.0

    def __repr__(self) -> str:
        return f"<{self.key} of {self.run} on {self.host} at {self.at:.3f}: {self.token}>"


def _read(path: Path) -> dict[tuple[str, str], list[Execution]]:
    out: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        ex = Execution(line)
        out[(ex.run, ex.key)].append(ex)
    return out


def executions(app: App) -> dict[tuple[str, str], list[Execution]]:
    """Every step execution, by (run, key), in the order they began."""
    return _read(app.log)


def acks(app: App) -> dict[tuple[str, str], list[Execution]]:
    """Every time a workflow got a step's stored result back (`ACKED_CHAIN` only)."""
    return _read(app.log.with_name(app.log.name + ".acks"))


def count_acks(app: App, run_ids: set[str]) -> int:
    """How many steps of these runs are done (stored, and their result handed back)."""
    return sum(run in run_ids for run, _ in acks(app))


async def until_all(
    client: tako.AsyncClient, run_ids: list[str], status: str, timeout: float
) -> None:
    """Poll `client` until every run has `status`; on timeout, say where they all are."""
    seen: Counter[str] = Counter()

    async def there() -> bool:
        runs = {r.run_id: r.status for r in await client.list_runs(limit=10_000)}
        seen.clear()
        seen.update(runs.get(rid, "missing") for rid in run_ids)
        return seen[status] == len(run_ids)

    try:
        await eventually(there, timeout=timeout, what=f"every run {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; runs by status: {dict(seen)}") from None


async def stored_steps(client: tako.AsyncClient, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each completed run's step results (step.run steps only), read through `client`."""
    out = {}
    for rid in run_ids:
        run = await client.get_run(rid)
        assert run.status == "completed", (rid, run.status, run.error)
        out[rid] = {s.key: str(s.result) for s in run.steps or [] if s.kind == "run"}
    return out


async def start_all(hosts: list[Host], app: App) -> None:
    async with trio.open_nursery() as nursery:
        for host in hosts:
            nursery.start_soon(host.start_supervisor, app.dir)


def check_chain(
    app: App, stored: dict[str, dict[str, str]], steps: int, context: str = ""
) -> dict[str, list[str]]:
    """The guarantees, for completed `ACKED_CHAIN` runs: every step stored, with the token of
    an execution that really ran and that the workflow was handed back; no execution of a
    step begun after its first ack (a finished step never runs again). Returns, per run,
    the steps that ran more than once (only a step in flight at a fault may) for the
    caller to judge against the faults it made."""
    ran, acked = executions(app), acks(app)
    twice: dict[str, list[str]] = {}
    for rid, results in stored.items():
        where = f"{context}run {rid}"
        assert sorted(results) == [f"s{i}" for i in range(steps)], f"{where}: stored {results}"
        for key, result in results.items():
            runs, done = ran[(rid, key)], acked[(rid, key)]
            tokens = [ex.token for ex in runs]
            assert result in tokens, f"{where} {key}: stored {result}, never ran; ran {runs}"
            assert done, f"{where} {key}: stored, but its result never reached the workflow"
            assert all(a.token == result for a in done), f"{where} {key}: acks {done} != {result}"
            first_ack = min(a.at for a in done)
            late = [ex for ex in runs if ex.at > first_ack]
            assert not late, f"{where} {key}: finished at {first_ack:.3f}, ran again: {late}"
            if len(runs) > 1:
                twice.setdefault(rid, []).append(key)
    return twice
