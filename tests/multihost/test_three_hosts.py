"""Three supervisors, three hosts, one app in one database: any of them serves any run.

Every step body appends `<host> <run> <key> <token>` to one log before returning the
token (a value no other execution can produce: host, pid, random). The log is the
ground truth of what ran: a step ran once exactly when the log holds one line for it,
and the step's stored result is that line's token (so the stored result came from
that execution, not from one the log missed). Hosts write the same file (the app
folder is shared, as a network file system would be; one short O_APPEND write is
atomic), so no execution on any host escapes the count.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable

import trio

import tako
from tests.conftest import App, eventually
from tests.multihost.harness import Host

RELAY = """
    import os, random
    from tako import workflow

    def record(run_id, key):
        token = f"{os.environ['TAKO_TEST_HOST']}/{os.getpid()}/{random.random()}"
        with open(EFFECTS, "a") as f:
            f.write(f"{os.environ['TAKO_TEST_HOST']} {run_id} {key} {token}\\n")
        return token

    @workflow
    async def relay(payload, step):
        before = await step.run("before", lambda: record(step.run_id, "before"))
        go = await step.wait_for("go")
        after = await step.run("after", lambda: record(step.run_id, "after"))
        return [before, go, after]
"""

CHAIN = """
    import os, random, time
    from tako import workflow

    def record(run_id, key):
        token = f"{os.environ['TAKO_TEST_HOST']}/{os.getpid()}/{random.random()}"
        with open(EFFECTS, "a") as f:
            f.write(f"{os.environ['TAKO_TEST_HOST']} {run_id} {key} {time.time()} {token}\\n")
        time.sleep(0.2)  # long enough that a kill finds steps in flight
        return token

    @workflow
    async def chain(payload, step):
        for i in range(6):
            await step.run(f"s{i}", lambda i=i: record(step.run_id, f"s{i}"))
        return "done"
"""


class Execution:
    """One line of the effects log: a step body that ran, where, and what it returned."""

    def __init__(self, line: str) -> None:
        fields = line.split()
        self.host, self.run, self.key, self.token = fields[0], fields[1], fields[2], fields[-1]
        self.at = float(fields[3]) if len(fields) == 5 else 0.0


def executions(app: App) -> dict[tuple[str, str], list[Execution]]:
    out: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for line in app.effects():
        ex = Execution(line)
        out[(ex.run, ex.key)].append(ex)
    return out


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


async def test_started_on_a_signalled_on_b_read_on_c(
    app: App, make_host: Callable[[str], Host]
) -> None:
    """A start, a signal and a read on three different supervisors; every step once."""
    app.write("relay.py", RELAY)
    a, b, c = make_host("a"), make_host("b"), make_host("c")
    await start_all([a, b, c], app)
    run_ids = [await a.client().start("relay", i) for i in range(30)]

    await until_all(c.client(), run_ids, "waiting", timeout=30)
    for i, rid in enumerate(run_ids):
        sent = await b.client().signal("go", i, run_id=rid)
        assert sent.delivered == 1, (rid, sent)
    await until_all(c.client(), run_ids, "completed", timeout=30)

    stored = await stored_steps(c.client(), run_ids)
    ran = executions(app)
    for i, rid in enumerate(run_ids):
        assert sorted(stored[rid]) == ["after", "before"], (rid, stored[rid])
        for key, result in stored[rid].items():
            tokens = [ex.token for ex in ran[(rid, key)]]
            assert tokens == [result], f"{rid} {key}: ran {len(tokens)} times, stored {result}"
        run = await c.client().get_run(rid)
        assert run.result == [stored[rid]["before"], i, stored[rid]["after"]]
    assert set(ran) == {(rid, key) for rid in run_ids for key in ("before", "after")}
    print("steps per host:", Counter(ex.host for exs in ran.values() for ex in exs))


async def test_kill9_of_a_host_its_runs_finish_on_the_others(
    app: App, make_host: Callable[[str], Host]
) -> None:
    """kill -9 of a host's supervisor and workers mid-step: the two others finish every run
    once the lease is over, not before; only a step in flight on the dead host runs twice."""
    lease = 3.0
    app.configure(workers={"lease": f"{lease:g}s"})
    app.write("chain.py", CHAIN)
    a, b, c = make_host("a"), make_host("b"), make_host("c")
    await start_all([a, b, c], app)
    run_ids = [await a.client().start("chain", i) for i in range(30)]

    def a_busy() -> bool:
        return sum(ex.host == "a" for exs in executions(app).values() for ex in exs) >= 3

    await eventually(a_busy, timeout=30, what="host a to be running steps")
    a.kill9()
    killed_at = time.time()

    await until_all(b.client(), run_ids, "completed", timeout=lease + 15)
    stored = await stored_steps(c.client(), run_ids)
    ran = executions(app)
    for rid in run_ids:
        assert sorted(stored[rid]) == [f"s{i}" for i in range(6)], (rid, stored[rid])
        twice = 0
        for key, result in stored[rid].items():
            runs = ran[(rid, key)]
            assert result in [ex.token for ex in runs], f"{rid} {key}: stored result never ran"
            assert sum(ex.host != "a" for ex in runs) <= 1, f"{rid} {key} ran twice on b/c"
            if len(runs) > 1:
                twice += 1
                redo = max(ex.at for ex in runs)
                assert redo >= killed_at + lease / 2, f"{rid} {key} taken before a's lease ended"
        assert twice <= 1, f"{rid}: {twice} steps ran twice after one kill"
    assert not any(ex.host == "a" and ex.at > killed_at for exs in ran.values() for ex in exs)


async def test_a_supervisor_starting_leaves_the_others_runs_alone(
    app: App, make_host: Callable[[str], Host]
) -> None:
    """A second supervisor coming up (a deploy, a restart) while the first runs steps must
    not take its runs: the first is alive, so no step may run twice."""
    app.write("chain.py", CHAIN)
    a, b = make_host("a"), make_host("b")
    await a.start_supervisor(app.dir)
    run_ids = [await a.client().start("chain", i) for i in range(10)]
    await eventually(lambda: len(app.effects()) >= 10, timeout=30, what="host a running steps")
    await b.start_supervisor(app.dir)
    await until_all(b.client(), run_ids, "completed", timeout=30)
    ran = executions(app)
    twice = {k: [ex.host for ex in exs] for k, exs in ran.items() if len(exs) > 1}
    assert not twice, f"{len(twice)} steps ran twice (run, key: hosts): {twice}"
