"""rolling-deploy: deploy to each environment in turn, cool down, check health.

    tako run rolling-deploy
    tako run rolling-deploy '{"version": "v2", "cool_down": "10s", "unhealthy": ["canary"]}'

Payload options (all optional): `environments` (default staging, canary,
prod), `version`, `cool_down` (a duration, default "2s") and `unhealthy`
(environments whose health check should fail, to see a deploy stop).

The deploy stops at the first unhealthy environment and the run ends
`failed` (NonRetryable: deploying again would not make it healthy), with an
error naming the environment; later environments are not touched.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tako import NonRetryable, Step, workflow

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"


@workflow  # named after the function: rolling-deploy
async def rolling_deploy(payload: dict[str, Any] | None, step: Step) -> dict[str, Any]:
    plan = payload or {}
    environments = plan.get("environments", ["staging", "canary", "prod"])
    version = plan.get("version", "v2")
    cool_down = plan.get("cool_down", "2s")
    unhealthy = plan.get("unhealthy", [])

    for env in environments:
        await step.run(f"deploy {env}", functools.partial(deploy, env, version, step.run_id))
        # The same name on every pass: the steps are keyed cool-down,
        # cool-down#2, cool-down#3. The run sleeps with no worker held.
        await step.sleep("cool-down", cool_down)
        # The verdict is recorded: a replay uses it, it never asks again.
        healthy = await step.run(f"health {env}", functools.partial(check, env, unhealthy))
        if not healthy:
            raise NonRetryable(f"{env} is unhealthy after deploying {version}; stopped there")
    return {"deployed": environments, "version": version}


# -- the outside world --------------------------------------------------------------


def deploy(env: str, version: str, run_id: str) -> None:
    """Deploying the same version again is harmless, so a repeat after a crash is fine."""
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "deploys.jsonl").open("a") as f:
        f.write(json.dumps({"env": env, "version": version, "run": run_id}) + "\n")


def check(env: str, unhealthy: list[str]) -> bool:
    return env not in unhealthy
