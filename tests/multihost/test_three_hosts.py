"""Three supervisors, three hosts, one app in one database: any of them serves any run.

What ran where is read off the effects log (see tests/multihost/ledger.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tests.conftest import App, eventually
from tests.multihost.harness import Host
from tests.multihost.ledger import executions, start_all, stored_steps, until_all

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
