"""The shape of the code: SQL only in a storage backend, no import cycles, small modules.

Cheap to check and easy to lose in a refactor, so it is a test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each package's import name and its folder: the engine's folders sit at the top of the
# repository and are reached as tako.takod, ... through the links in tako/.
PACKAGES = {
    "tako": "tako", "tako.takod": "takod", "tako.worker_runtime": "worker_runtime",
    "tako.cli": "cli",
}  # fmt: skip
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b",
    re.I | re.S,
)
BACKENDS = ("takod/storage/sqlite/", "takod/storage/postgres/")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts and parts[0] in ("takod", "worker_runtime", "cli") and folder == "tako":
                continue  # the links: their modules are counted under their own folder
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def in_backend(path: Path) -> bool:
    return any(str(path.relative_to(ROOT)).startswith(b) for b in BACKENDS)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + ".") and not t.startswith(name + "."):
                out.add(t)
    return out


def test_sql_and_sqlite_live_only_in_a_backend() -> None:
    leaks = []
    for path in modules().values():
        if in_backend(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if "sqlite3" in names:
                    leaks.append(f"{path}:{node.lineno} imports sqlite3")
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and SQL.search(text):
                leaks.append(f"{path}:{node.lineno} holds SQL")
    assert leaks == []


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join((*trail, start)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    assert cycles == []


def test_the_wire_and_the_worker_never_import_takod() -> None:
    known = modules()
    wrong = [
        f"{name} imports {t}"
        for name, path in known.items()
        if not name.startswith(("tako.takod", "tako.cli", "tako.testing"))
        for t in imports(name, path, known)
        if t.startswith("tako.takod")
    ]
    assert wrong == []


def test_no_module_over_600_lines() -> None:
    big = [f"{p}: {n}" for p in modules().values() if (n := len(p.read_text().splitlines())) > 600]
    assert big == []
