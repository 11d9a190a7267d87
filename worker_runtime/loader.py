"""Imports every `workflows/**/*.py` of an app and collects its workflows.

Each file is imported under the name user code would use for it
(`workflows/common.py` is `workflows.common`, `workflows` a package rooted
at the app's folder), so a helper that workflow files import with
`from workflows.common import x` runs once per process, not once per name.

A file that fails to import is reported with its line and skipped; the other
files still load. Two workflows with the same name are an error on the
second file, naming the first.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from tako._records import NOTIFY_WORKFLOW, LoadError, Registry, WorkflowInfo
from tako.worker_runtime.examples import payload_example
from tako.worker_runtime.registry import (
    ATTR,
    NOTIFIER_ATTR,
    WorkflowDef,
    notify_workflow,
)

PACKAGE = "workflows"
MAX_OUTPUT = 16 * 1024  # what one file printed while imported: its last characters are kept


def load_app(
    app_dir: Path, output: dict[str, str] | None = None
) -> tuple[dict[str, WorkflowDef], list[LoadError]]:
    """Import the app's workflow files. With `output`, what each file writes to stdout or
    stderr while it is imported (print, os.write, warnings) is kept there, by file."""
    app_dir = app_dir.absolute()
    folder = app_dir / PACKAGE
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    found: dict[str, WorkflowDef] = {}
    errors: list[LoadError] = []
    if not folder.is_dir():
        errors.append(LoadError(file=str(folder), line=None, message="no workflows/ folder here"))
        return found, errors
    _forget_package()  # a second load in one process (tests) imports everything afresh
    notifiers: list[Any] = []
    first_notifier_file = ""
    paths = sorted(folder.rglob("*.py"))
    init = folder / "__init__.py"
    if init in paths:  # the package itself goes first
        paths.remove(init)
        paths.insert(0, init)
    else:
        sys.modules[PACKAGE] = _bare_package(folder)
    for path in paths:
        rel = path.relative_to(app_dir)
        try:
            with _captured(output, str(rel)):
                defs, found_notifiers = _import(path, rel, folder)
        except BaseException as exc:  # a user file may raise anything, even SystemExit
            errors.append(_load_error(path, rel, exc))
            continue
        finally:
            if PACKAGE not in sys.modules:  # its __init__.py failed: the other files still load
                sys.modules[PACKAGE] = _bare_package(folder)
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
    output: dict[str, str] = {}
    workflows, errors = load_app(app_dir, output)
    return Registry(
        workflows=[
            WorkflowInfo(
                name=wf.name,
                file=str(Path(wf.file).relative_to(app_dir.absolute())),
                retries=wf.retries,
                timeout=wf.timeout,
                payload_example=payload_example(wf.fn),
                concurrency=msgspec.UNSET if wf.concurrency is None else wf.concurrency,
                key_concurrency=(
                    msgspec.UNSET if wf.key_concurrency is None else wf.key_concurrency
                ),
                **(
                    {"schedule": wf.schedule, "timezone": wf.timezone, "catch_up": wf.catch_up}
                    if wf.schedule
                    else {}
                ),
            )
            for wf in workflows.values()
        ],
        errors=errors,
        output=output,
    )


def _import(path: Path, rel: Path, folder: Path) -> tuple[list[WorkflowDef], list[Any]]:
    parts = rel.with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if len(parts) == 1:  # workflows/__init__.py: the package, rooted at the app's folder
        module = _exec(PACKAGE, path, search=[str(folder)])
    elif any("." in part for part in parts):  # `a.b.py`: no import statement can name it
        module = _exec(PACKAGE + "." + "_".join(parts[1:]).replace(".", "_"), path)
    else:
        module = importlib.import_module(".".join(parts))
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


def _exec(name: str, path: Path, search: list[str] | None = None) -> types.ModuleType:
    """Import the file at `path` as module `name` (in sys.modules once it has run)."""
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _bare_package(folder: Path) -> types.ModuleType:
    """`workflows` when it has no __init__.py (or a broken one): a package rooted at
    `folder`, whatever other `workflows` the import path may hold."""
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    return importlib.util.module_from_spec(spec)


def _forget_package() -> None:
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@contextlib.contextmanager
def _captured(output: dict[str, str] | None, label: str) -> Iterator[None]:
    """Send fds 1 and 2 (so print, os.write and subprocesses alike) to a file for the
    block, and keep what was written in `output[label]`."""
    if output is None:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        _flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text:
                output[label] = text[-MAX_OUTPUT:]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # user code may have replaced or closed them
            stream.flush()


def _load_error(path: Path, rel: Path, exc: BaseException) -> LoadError:
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return LoadError(file=str(rel), line=exc.lineno, message=f"SyntaxError: {exc.msg}")
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return LoadError(file=str(rel), line=line, message=f"{type(exc).__name__}: {exc}")
