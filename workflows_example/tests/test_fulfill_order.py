"""fulfill-order, tested with tako's test kit: a real supervisor and real workers
whose clock the test moves, so a seven-day approval window takes no time.

    pip install pytest pytest-asyncio
    python -m pytest workflows_example/tests

The `tako_env` fixture comes with tako (no conftest.py needed): it serves the
app above this file on a fresh data dir. Each call returns once the runs it
moved have parked or finished, so what a test reads next is settled.
"""

import pytest

import tako

BIG_ORDER = 42  # $1,299.00: above the $500 threshold, so a person must approve it
SMALL_ORDER = 41  # $19.00: ships at once


async def test_a_small_order_ships_without_asking(tako_env):
    run_id = await tako_env.start("fulfill-order", {"order_id": SMALL_ORDER})
    assert await tako_env.result(run_id) == {"shipped": SMALL_ORDER}


async def test_a_big_order_ships_once_approved(tako_env):
    run_id = await tako_env.start("fulfill-order", {"order_id": BIG_ORDER})
    run = await tako_env.get_run(run_id)
    assert (run.status, run.waiting_for) == ("waiting", "approval:order-42")

    await tako_env.signal("approval:order-42", {"approved": True, "by": "alice"})

    assert await tako_env.result(run_id) == {"shipped": BIG_ORDER}
    steps = [step.name for step in (await tako_env.get_run(run_id)).steps]
    assert steps == ["load-order", "charge", "approval:order-42", "ship", "notify"]


async def test_a_rejected_order_is_refunded_and_not_shipped(tako_env):
    run_id = await tako_env.start("fulfill-order", {"order_id": BIG_ORDER})

    await tako_env.signal("approval:order-42", {"approved": False, "by": "bob"})

    with pytest.raises(tako.RunCancelled, match="rejected by bob"):
        await tako_env.result(run_id)
    steps = [step.name for step in (await tako_env.get_run(run_id)).steps]
    assert "refund" in steps and "ship" not in steps


async def test_an_order_nobody_approves_is_held_after_seven_days(tako_env):
    run_id = await tako_env.start("fulfill-order", {"order_id": BIG_ORDER})

    await tako_env.advance("6d23h")  # an hour before the deadline: still waiting
    assert (await tako_env.get_run(run_id)).status == "waiting"

    await tako_env.advance("1h")
    with pytest.raises(tako.RunCancelled, match="approval timed out"):
        await tako_env.result(run_id)


async def test_a_batch_starts_each_order_as_a_child_and_reports(tako_env):
    batch = await tako_env.start("fulfill-batch", {"order_ids": [SMALL_ORDER, BIG_ORDER]})

    result = await tako_env.result(batch)
    small, big = result["orders"]
    assert result["report"]["sent"] is True
    assert await tako_env.result(small) == {"shipped": SMALL_ORDER}
    assert (await tako_env.get_run(big)).status == "waiting"  # its own approval wait
    children = [(c.run_id, c.status) for c in (await tako_env.get_run(batch)).children]
    assert children == [(small, "completed"), (big, "waiting"), (f"{batch}.report", "completed")]
