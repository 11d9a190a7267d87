"""The app's workflows as takod knows them: learnt from a `--describe` worker, never imported.

User code never loads in takod: a bad file must not take it down. A worker
subprocess imports `workflows/` and prints the registry (names, options, load
errors, what each file printed) as JSON.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import msgspec
import trio

from tako._errors import UnknownWorkflow
from tako._records import LoadError, Registry, WorkflowInfo
from tako.takod.storage.interface import Limits, ScheduleSpec


async def describe(app_dir: Path) -> Registry:
    """The app's registry, or one load error saying why the worker could not load it."""
    # -P: the current folder must not shadow installed packages (a `tako/` clone here)
    argv = [sys.executable, "-P", "-m", "tako.worker_runtime", str(app_dir), "--describe"]
    proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if proc.returncode == 0:
        with contextlib.suppress(msgspec.DecodeError):  # it exited early (os._exit?)
            return msgspec.json.decode(proc.stdout, type=Registry)
    message = proc.stderr.decode(errors="replace").strip().splitlines()
    reason = message[-1] if message else f"exit code {proc.returncode}"
    if proc.returncode == 0:
        reason += " (a workflow file exited while imported?)"
    return Registry(
        errors=[
            LoadError(
                file=str(app_dir / "workflows"),
                line=None,
                message=f"the worker failed to load the app: {reason}",
            )
        ]
    )


class Catalog:
    """The registry in force, and what follows from it for runs."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.use(registry or Registry())

    def use(self, registry: Registry) -> None:
        self.registry = registry
        self.workflows = {w.name: w for w in registry.workflows}
        # workflows with a concurrency limit: claims take no more of their runs than it allows
        self.limits = Limits(
            workflows={
                w.name: w.concurrency for w in registry.workflows if isinstance(w.concurrency, int)
            },
            keys={
                w.name: w.key_concurrency
                for w in registry.workflows
                if isinstance(w.key_concurrency, int)
            },
        )

    def get(self, name: str) -> WorkflowInfo:
        """The workflow, or UnknownWorkflow naming the known ones and the broken files."""
        wf = self.workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            broken = "".join(
                f"; {e.file} failed to load: line {e.line or '?'}: {e.message}"
                for e in self.registry.errors
            )
            raise UnknownWorkflow(f"no workflow named {name!r} (known: {known}){broken}")
        return wf

    def schedules(self) -> list[ScheduleSpec]:
        """The app's cron schedules, as the store keeps them."""
        out = []
        for w in self.workflows.values():
            if isinstance(w.schedule, str):
                zone = w.timezone if isinstance(w.timezone, str) else "UTC"
                catch_up = w.catch_up if isinstance(w.catch_up, str) else "latest"
                spec = (w.name, w.schedule, zone, catch_up, w.retries + 1, self.timeout_ms(w.name))
                out.append(ScheduleSpec(*spec))
        return out

    def timeout_ms(self, name: str) -> int | None:
        wf = self.workflows.get(name)
        return int(wf.timeout * 1000) if wf is not None and wf.timeout else None

    def held_because(self, workflow: str) -> str | None:
        """Why runs of `workflow` cannot start now, or None when they can."""
        if workflow in self.workflows:
            return None
        broken = "; ".join(f"{e.file}:{e.line or '?'}: {e.message}" for e in self.registry.errors)
        if broken:
            return (
                f"workflow {workflow!r} is not loaded ({broken}); "
                "the run waits and resumes once the file is fixed"
            )
        return f"the app has no workflow named {workflow!r}; the run waits for it to come back"
