"""A real `tako dev` serving HTTP on a free port, and the app its tests use."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_harness import DevServer, eventually, make_app, short_data_dir, tako_cmd

FLOWS = """
    import msgspec
    from tako import Step, workflow

    class Terms(msgspec.Struct):
        amount: int
        note: str = ""

    @workflow(retries=0)
    async def echo(payload, step: Step):
        return await step.run("echo", lambda: payload)

    @workflow(retries=0)
    async def waiter(payload, step: Step):
        got = await step.wait_for("go")
        return await step.run("after", lambda: got)

    @workflow(retries=0)
    async def boom(payload, step: Step):
        await step.run("explode", lambda: 1 / 0)

    @workflow(retries=0)
    async def refund(payload, step: Step):
        payload = payload or {}
        decision = await step.approval(
            "manager",
            summary=payload.get("summary", "Refund order 42"),
            data={"amount": payload.get("amount", 120), "note": payload.get("note", "")},
            approvers=payload.get("approvers", ["alice", "bob"]),
            required=payload.get("required", 1),
            type=Terms,
        )
        return await step.run("after", lambda: [decision.status, decision.by, decision.value])
"""

URL_LINE = re.compile(r"^\s*http\s+(http://\S+)", re.MULTILINE)


class HttpDev:
    """`tako dev APP --http 127.0.0.1:0`: its base URL, a client, and the `tako` command."""

    def __init__(self, server: DevServer) -> None:
        self.server = server
        match = URL_LINE.search(server.log())
        assert match, server.log()
        self.url = match.group(1)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def tako(self, *args: str) -> Any:
        return self.server.tako(*args)

    def token(self, name: str, *scopes: str) -> str:
        scope_args = [a for s in scopes for a in ("--scope", s)]
        made = self.tako("tokens", "create", name, *scope_args, "--json")
        assert made.code == 0, made.err
        token: str = made.json()["token"]
        return token

    def as_(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def parked(self, run_id: str) -> dict[str, Any]:
        return self.server.wait_status(run_id, "waiting", "completed", "failed", "cancelled")


@contextmanager
def http_dev(root: Path, files: dict[str, str] | None = None, **toml: str) -> Iterator[HttpDev]:
    app = make_app(root, files or {"flows.py": FLOWS})
    if toml:
        with (app / "tako.toml").open("a") as f:
            for line in toml.values():
                f.write(line + "\n")
    with serving(app) as dev:
        yield dev


@contextmanager
def serving(app: Path) -> Iterator[HttpDev]:
    """`tako dev APP --http 127.0.0.1:0` on an app folder that exists already."""
    data_dir = short_data_dir()
    server = DevServer(app, data_dir, args=("--http", "127.0.0.1:0"))
    try:
        yield HttpDev(server)
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


__all__ = [
    "FLOWS",
    "DevServer",
    "HttpDev",
    "eventually",
    "http_dev",
    "serving",
    "short_data_dir",
    "tako_cmd",
]
