"""`tako.http.app()` mounted in someone else's Starlette app, with its own login."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

import tako.http
from tests.conftest import App, running

pytestmark = pytest.mark.trio

FLOWS = """
from tako import workflow

@workflow(retries=0)
async def ask(payload, step):
    decision = await step.approval("ok", summary="ok?", approvers=["alice"])
    return decision.by
"""


@pytest.fixture
def runtime() -> str:
    return "asyncio"


def site(app: App) -> Starlette:
    async def login(conn: HTTPConnection) -> str | None:
        return conn.headers.get("x-user")  # the host app's own session, in short

    return Starlette(
        routes=[Mount("/tako", app=tako.http.app(socket=app.socket, authenticate=login))]
    )


async def test_a_mounted_app_decides_as_the_host_apps_user(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        transport = httpx.ASGITransport(app=site(app), client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
            started = await http.post(
                "/tako/api/runs", json={"workflow": "ask"}, headers={"x-user": "alice"}
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            client = app.client()
            while (await client.get_run(run_id)).status != "waiting":
                await client.wait(run_id, parked=True, timeout=10)
            # not signed in, not on this machine, no token: refused, saying how to get in
            anonymous = await http.get("/tako/api/runs")
            assert anonymous.status_code == 401
            assert "tako tokens create" in anonymous.json()["error"]["message"]
            page = await http.get(f"/tako/approvals/{run_id}:ok", headers={"x-user": "alice"})
            assert page.status_code == 200
            assert 'action="/tako/approvals/' in page.text  # its forms stay under the mount
            decided = await http.post(
                f"/tako/api/approvals/{run_id}:ok/decision",
                json={"action": "approve"},
                headers={"x-user": "alice"},
            )
            assert decided.json()["decision"]["by"] == "alice"
            assert await client.result(run_id, timeout=15) == "alice"


async def test_without_a_supervisor_healthz_and_the_api_say_503(tmp_path: object) -> None:
    unreachable = tako.http.app(socket="/nonexistent/tako.sock")
    transport = httpx.ASGITransport(app=unreachable)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (503, "down")
        listed = await http.get("/api/runs")
        assert (listed.status_code, listed.json()["error"]["code"]) == (503, "unavailable")
        assert "/nonexistent/tako.sock" in listed.json()["error"]["message"]
