"""kill -9 of a whole host (its supervisor and every worker) at random moments under load.

Each trial starts a batch of runs through all three supervisors, waits until a
seeded random number of their steps are done, then SIGKILLs everything on one host
(chosen by the same seed among those running the batch's steps). The two others
must finish every run of the batch, taking the dead host's runs only once its lease
is over; nothing may be lost and no step whose checkpoint was stored may run again.
The killed supervisor is started again on its data dir before the next trial, so
the load stays spread over three hosts.

`TAKO_TEST_SEED=<n>` replays a seed's choices (the moments and the hosts killed; the
processes' timing is the machine's own).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.conftest import App, eventually
from tests.multihost.harness import Host
from tests.multihost.ledger import (
    ACKED_CHAIN,
    check_chain,
    count_acks,
    executions,
    start_all,
    stored_steps,
    until_all,
)

pytestmark = pytest.mark.slow

LEASE = 3.0
TRIALS = 12
RUNS = 30  # per trial, a third started through each supervisor
STEPS = 6
PAUSE = 0.2  # seconds each step body takes: a kill finds some in flight


@pytest.mark.timeout(300)
async def test_kill9_of_a_host_at_random_moments_loses_nothing(
    app: App, make_host: Callable[[str], Host]
) -> None:
    seed = int(os.environ.get("TAKO_TEST_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    print(f"seed {seed} (TAKO_TEST_SEED={seed} replays its choices)")
    app.configure(workers={"lease": f"{LEASE:g}s"})
    app.write("chain.py", ACKED_CHAIN)
    hosts = [make_host(name) for name in ("a", "b", "c")]
    await start_all(hosts, app)
    began = time.monotonic()
    total_twice = 0

    for trial in range(TRIALS):
        context = f"seed {seed}, trial {trial}: "
        payload = {"steps": STEPS, "pause": PAUSE}
        run_ids = [
            await hosts[i % 3].client().start("chain", payload, run_id=f"t{trial}-r{i}")
            for i in range(RUNS)
        ]
        moment = rng.randint(1, RUNS * STEPS * 4 // 5)  # steps done when the kill comes
        batch = set(run_ids)
        await eventually(
            lambda: count_acks(app, batch) >= moment,  # noqa: B023 (awaited at once)
            timeout=30,
            what=f"{context}{moment} steps done",
        )
        begun = Counter(
            ex.host for (run, _), exs in executions(app).items() if run in batch for ex in exs
        )
        # a host the batch's steps run on (one that got none has nothing in flight to lose)
        victim = rng.choice([h for h in hosts if h.name in begun])
        survivors = [h for h in hosts if h is not victim]
        victim.kill9()
        killed_at = time.time()

        try:
            await until_all(survivors[0].client(), run_ids, "completed", timeout=LEASE + 30)
        except AssertionError as exc:
            raise AssertionError(
                f"{context}killed {victim.name} after {moment} steps: {exc}"
            ) from None
        done_after = time.time() - killed_at
        stored = await stored_steps(survivors[1].client(), run_ids)
        twice = check_chain(app, stored, STEPS, context)
        ran = executions(app)
        for rid, keys in twice.items():
            where = f"{context}{rid}, killed {victim.name} at {killed_at:.3f}"
            assert len(keys) == 1, f"{where}: {keys} all ran twice after one kill"
            runs = ran[(rid, keys[0])]
            first, *again = runs
            assert len(again) == 1, f"{where}: {keys[0]} ran {len(runs)} times: {runs}"
            assert first.host == victim.name and first.at < killed_at, (
                f"{where}: {keys[0]} ran twice, not in flight on the killed host: {runs}"
            )
            assert again[0].host != victim.name, f"{where}: {runs}"
            assert again[0].at >= killed_at + LEASE / 2, (
                f"{where}: {keys[0]} taken back before the lease was over: {runs}"
            )
            later = [
                ex
                for (run, _), exs in ran.items()
                if run == rid
                for ex in exs
                if first.at < ex.at < killed_at
            ]
            assert not later, f"{where}: {keys[0]} was not its step in flight: {later} began after"
        posthumous = [
            ex for exs in ran.values() for ex in exs if ex.host == victim.name and ex.at > killed_at
        ]
        assert not posthumous, f"{context}the killed host ran steps after the kill: {posthumous}"
        total_twice += len(twice)
        print(
            f"trial {trial}: killed {victim.name} after {moment} steps done "
            f"(steps begun by host: {dict(begun)}); all {RUNS} runs completed "
            f"{done_after:.1f}s later; {len(twice)} step(s) in flight ran again"
        )
        await victim.restart_supervisor()

    elapsed = time.monotonic() - began
    print(f"{TRIALS} kills in {elapsed:.1f}s; {total_twice} in-flight steps ran a second time")
    assert total_twice > 0, f"seed {seed}: no kill found a step in flight: the test bit nothing"
