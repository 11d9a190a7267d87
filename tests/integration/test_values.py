"""`step.now()`, `step.uuid()`, `step.random()`: recorded like steps, so a replay sees the
values the first execution drew; `step.now()` reads takod's clock (here the test kit's)."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tako.testing import SyncEnv

T0 = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)

VALUES = """
    from tako import workflow

    @workflow("values")
    async def values(payload, step):
        drawn = [await step.now(), await step.uuid(), await step.random()]
        with open(EFFECTS, "a") as f:  # every execution, replays included
            f.write(repr(drawn) + "\\n")
        await step.sleep("nap", "1d")
        later = await step.now()
        return {
            "now": drawn[0].isoformat(), "uuid": str(drawn[1]), "random": drawn[2],
            "later": later.isoformat(), "types": [type(v).__name__ for v in drawn],
        }
"""


def test_values_are_drawn_once_and_replayed(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    effects = tmp_path / "effects.log"
    source = textwrap.dedent(VALUES).replace("EFFECTS", repr(str(effects)))
    (tmp_path / "workflows" / "values.py").write_text(source)
    with SyncEnv(tmp_path, start_at=T0) as env:
        run_id = env.start("values")
        env.advance("1d")
        result = env.result(run_id)
        steps = {s.key: s for s in env.get_run(run_id).steps or []}
    first, replay = effects.read_text().splitlines()
    assert first == replay  # the replay after the sleep saw the same three values
    assert result["types"] == ["datetime", "UUID", "float"]
    assert datetime.fromisoformat(result["now"]) - T0 < timedelta(seconds=5)
    assert datetime.fromisoformat(result["later"]) - T0 >= timedelta(days=1)
    assert uuid.UUID(result["uuid"]).version == 4
    assert 0 <= result["random"] < 1
    assert {"@now", "@uuid", "@random", "@now#2"} <= set(steps)
    assert steps["@uuid"].result == result["uuid"]
