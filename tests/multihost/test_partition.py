"""A host cut off from the database past its lease while its worker is inside a step.

The others take the run back after the lease and finish it; the cut-off host's worker
finishes its step late, and that checkpoint must be refused (the claim moved on), so
the run completes once with one result. Once its link is back, the host rejoins: it
answers again, and the others list it among the supervisors.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

import tako
from tests.conftest import App, eventually
from tests.multihost.harness import Host
from tests.multihost.test_three_hosts import executions, start_all

# The step waits for a gate file of its host before returning: the test holds host a's
# worker inside the step for as long as it likes (b and c have their gates open).
GATED = """
    import os, pathlib, random, time
    from tako import workflow

    def gated(run_id):
        host = os.environ["TAKO_TEST_HOST"]
        token = f"{host}/{os.getpid()}/{random.random()}"
        with open(EFFECTS, "a") as f:
            f.write(f"{host} {run_id} enter {time.time()} {token}\\n")
        gate = pathlib.Path(EFFECTS).with_name(f"gate-{host}")
        while not gate.exists():
            time.sleep(0.05)
        with open(EFFECTS, "a") as f:
            f.write(f"{host} {run_id} slow {time.time()} {token}\\n")
        return token

    @workflow
    async def gated_run(payload, step):
        return await step.run("slow", lambda: gated(step.run_id))
"""


async def test_a_host_cut_off_past_its_lease_cannot_commit_and_rejoins(
    app: App, make_host: Callable[[str], Host]
) -> None:
    lease = 3.0
    app.configure(workers={"lease": f"{lease:g}s"})
    app.write("gated.py", GATED)
    for host in ("b", "c"):
        (app.dir / f"gate-{host}").touch()
    a, b, c = make_host("a"), make_host("b"), make_host("c")
    await start_all([a, b, c], app)
    run_id = await a.client().start("gated-run", None)

    def entered(host: str) -> bool:
        return any(ex.host == host for ex in executions(app).get((run_id, "enter"), []))

    await eventually(lambda: entered("a"), timeout=20, what="a's worker inside the step")
    a.cut()
    try:
        # past a's lease, b or c takes the run back and finishes it (their gates are open)
        run = await _finished(b.client(), run_id, timeout=lease * 3 + 20)
        assert run.status == "completed", (run.status, run.error)
        winner = run.result
        assert isinstance(winner, str) and not winner.startswith("a/"), winner

        # a's socket stays up while it cannot reach the database: it answers, promptly
        with trio.fail_after(30):
            try:
                await a.client().status()
            except tako.TakoError as exc:
                assert exc.code == "unavailable", exc

        (app.dir / "gate-a").touch()  # a's worker finishes its step now, too late
        await eventually(
            lambda: any(ex.host == "a" for ex in executions(app).get((run_id, "slow"), [])),
            timeout=20,
            what="a's late step to finish",
        )
    finally:
        a.mend()

    # a rejoins: it answers with the database's counts, and the others list it again
    async def a_answers() -> bool:
        try:
            return bool((await a.client().status()).get("runs"))
        except tako.TakoError:
            return False

    await eventually(a_answers, timeout=40, what="a to reach the database again")
    await eventually(
        lambda: _supervisors(c.client(), 3), timeout=lease * 3 + 20, what="a listed again"
    )

    # the run completed once, with b's or c's result; a's late checkpoint was refused
    final = await c.client().get_run(run_id)
    assert (final.status, final.result) == ("completed", winner)
    slow = [s for s in final.steps or [] if s.key == "slow"]
    assert len(slow) == 1 and slow[0].result == winner
    finished = executions(app)[(run_id, "slow")]
    assert sorted(ex.host for ex in finished)[0] == "a" and len(finished) == 2, finished
    assert [ex.token for ex in finished if ex.host != "a"] == [winner]


async def _finished(client: tako.AsyncClient, run_id: str, timeout: float) -> tako.Run:
    async def done() -> tako.Run | None:
        run = await client.get_run(run_id)
        return run if run.finished else None

    found: tako.Run = await eventually(done, timeout=timeout, what=f"{run_id} to finish")
    return found


async def _supervisors(client: tako.AsyncClient, count: int) -> bool:
    status = await client.status()
    return len(status.get("supervisors") or []) == count
