"""1,000 runs asleep until one instant, on three supervisors sharing the timers.

Every run sleeps until the same instant (`step.sleep_until`), a few seconds ahead,
then runs one step that logs where and when it ran. The supervisors share the due
timers out (each takes a batch the others skip): every run must resume exactly once
(one execution of the step after the sleep), none before the instant, and all must
complete. The test prints how late the last one resumed and which host resumed how many.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import trio

from tests.conftest import App
from tests.multihost.harness import Host
from tests.multihost.ledger import executions, start_all, stored_steps, until_all

pytestmark = pytest.mark.slow

RUNS = 1000
AHEAD = 7.0  # seconds from the first start to the instant: all runs asleep well before it

NAP = """
    import os, random, time
    from tako import workflow

    def record(run_id, key):
        host = os.environ["TAKO_TEST_HOST"]
        token = f"{host}/{os.getpid()}/{random.random()}"
        with open(EFFECTS, "a") as f:
            f.write(f"{host} {run_id} {key} {time.time()} {token}\\n")
        return token

    @workflow
    async def nap(payload, step):
        await step.sleep_until("nap", payload)
        return await step.run("after", lambda: record(step.run_id, "after"))
"""


@pytest.mark.timeout(120)
async def test_a_thousand_runs_sleeping_until_one_instant_each_resume_once(
    app: App, make_host: Callable[[str], Host]
) -> None:
    began = time.monotonic()
    app.configure(workers={"idle_timeout": "60s"})  # warm workers: the lag is the timers'
    app.write("nap.py", NAP)
    hosts = [make_host(name) for name in ("a", "b", "c")]
    await start_all(hosts, app)
    instant = round(time.time() + AHEAD, 3)  # sleep_until keeps whole milliseconds
    run_ids: list[str] = []

    async def starter(host: Host, numbers: range) -> None:
        client = host.client()
        for n in numbers:
            run_ids.append(await client.start("nap", instant, run_id=f"nap-{n}"))

    async with trio.open_nursery() as nursery:  # four clients per supervisor
        for i in range(12):
            nursery.start_soon(starter, hosts[i % 3], range(i, RUNS, 12))
    started = time.time()

    await until_all(hosts[0].client(), run_ids, "sleeping", timeout=AHEAD)
    asleep = time.time()
    assert asleep < instant, f"not all asleep before the instant ({asleep - instant:.2f}s late)"
    assert not executions(app), "a step after the sleep ran before the instant"

    await until_all(hosts[1].client(), run_ids, "completed", timeout=60)
    completed = time.time()
    stored = await stored_steps(hosts[2].client(), run_ids)
    ran = executions(app)
    resumed = [ex for rid in run_ids for ex in ran[(rid, "after")]]
    once = Counter(ex.run for ex in resumed)
    twice = {rid: ran[(rid, "after")] for rid, n in once.items() if n > 1}
    assert not twice, f"{len(twice)} runs resumed more than once: {twice}"
    assert len(once) == RUNS, f"{RUNS - len(once)} runs never resumed"
    for rid in run_ids:
        (ex,) = ran[(rid, "after")]
        assert stored[rid] == {"after": ex.token}, (rid, stored[rid], ex)
        assert ex.at >= instant, f"{rid} resumed {instant - ex.at:.3f}s before the instant"
    lag = sorted(ex.at - instant for ex in resumed)
    print(
        f"{RUNS} runs started in {started - (instant - AHEAD):.2f}s, all asleep "
        f"{instant - asleep:.2f}s before the instant; each resumed once; "
        f"resumed by host: {dict(Counter(ex.host for ex in resumed))}"
    )
    print(
        f"after the instant: first resumed {lag[0]:.3f}s, median {lag[len(lag) // 2]:.3f}s, "
        f"last {lag[-1]:.3f}s; "
        f"all completed {completed - instant:.2f}s after it; "
        f"test took {time.monotonic() - began:.1f}s"
    )
