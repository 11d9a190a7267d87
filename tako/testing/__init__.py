"""The test kit: a real supervisor and real workers whose clock the test moves.

    async with tako.testing.Env("path/to/app") as env:
        run_id = await env.start("fulfill_order", {"order_id": "A1"})
        await env.advance("1d")          # the day-long sleep is over, in no time
        assert await env.result(run_id) == ...

In pytest, the `tako_env` fixture gives an open `Env` for the app found above
the test file (see docs/testing.md); plain tests use `tako_env.sync`.
"""

from tako.takod.advance import NotSettled
from tako.testing._env import Env, StillParked, SyncEnv

__all__ = ["Env", "NotSettled", "StillParked", "SyncEnv"]
