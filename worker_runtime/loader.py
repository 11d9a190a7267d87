"""Imports every `workflows/**/*.py` of an app and collects its workflows.

A file that fails to import is reported with its line and skipped; the other
files still load. Two workflows with the same name are an error on the
second file, naming the first.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from tako._records import LoadError, Registry, WorkflowInfo
from worker_runtime.registry import (
    ATTR,
    NOTIFIER_ATTR,
    NOTIFY_WORKFLOW,
    WorkflowDef,
    notify_workflow,
)


def load_app(app_dir: Path) -> tuple[dict[str, WorkflowDef], list[LoadError]]:
    app_dir = app_dir.absolute()
    folder = app_dir / "workflows"
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    found: dict[str, WorkflowDef] = {}
    errors: list[LoadError] = []
    if not folder.is_dir():
        errors.append(LoadError(file=str(folder), line=None, message="no workflows/ folder here"))
        return found, errors
    notifiers: list[Any] = []
    first_notifier_file = ""
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(app_dir)
        try:
            defs, found_notifiers = _import(path, rel)
        except BaseException as exc:  # a user file may raise anything, even SystemExit
            errors.append(_load_error(path, rel, exc))
            continue
        if found_notifiers and not notifiers:
            first_notifier_file = str(path)
        notifiers += found_notifiers
        for wf in defs:
            first = found.get(wf.name)
            if first is not None:
                errors.append(
                    LoadError(
                        file=str(rel),
                        line=wf.line,
                        message=f"duplicate workflow name {wf.name!r}: already defined in "
                        f"{Path(first.file).relative_to(app_dir)}:{first.line}",
                    )
                )
                continue
            found[wf.name] = wf
    if notifiers:
        found[NOTIFY_WORKFLOW] = notify_workflow(notifiers, first_notifier_file)
    return found, errors


def describe(app_dir: Path) -> Registry:
    workflows, errors = load_app(app_dir)
    return Registry(
        workflows=[
            WorkflowInfo(
                name=wf.name,
                file=str(Path(wf.file).relative_to(app_dir.absolute())),
                retries=wf.retries,
                timeout=wf.timeout,
            )
            for wf in workflows.values()
        ],
        errors=errors,
    )


def _import(path: Path, rel: Path) -> tuple[list[WorkflowDef], list[Any]]:
    module_name = "tako_app." + ".".join(rel.with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    seen: list[WorkflowDef] = []
    notifiers: list[Any] = []
    for value in vars(module).values():
        wf = getattr(value, ATTR, None)
        if isinstance(wf, WorkflowDef) and wf.file == str(path) and wf not in seen:
            seen.append(wf)
        code = getattr(value, "__code__", None)
        if getattr(value, NOTIFIER_ATTR, False) and code and code.co_filename == str(path):
            notifiers.append(value)
    return seen, notifiers


def _load_error(path: Path, rel: Path, exc: BaseException) -> LoadError:
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return LoadError(file=str(rel), line=exc.lineno, message=f"SyntaxError: {exc.msg}")
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return LoadError(file=str(rel), line=line, message=f"{type(exc).__name__}: {exc}")
