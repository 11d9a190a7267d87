"""Every JSON API route against a real `tako dev` over real HTTP: replies, error codes,
credentials."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_harness import HttpDev, http_dev, short_data_dir, tako_cmd


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpDev]:
    root = tmp_path_factory.mktemp("http") / "shop"
    with http_dev(root, limit='[runs]\nmax_payload = "2KiB"') as server:
        yield server


def test_healthz_and_the_openapi_document(dev: HttpDev) -> None:
    assert dev.http.get("/healthz").json()["status"] == "ok"
    doc = dev.http.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/retry",
        "/api/runs/{run_id}/events",
        "/api/runs/{run_id}/stream",
        "/api/signals/{event}",
        "/api/approvals",
        "/api/approvals/{key}",
        "/api/approvals/{key}/decision",
        "/api/approvals/{key}/stream",
    }
    assert {"Run", "Approval", "StartBody", "DecisionBody"} <= set(doc["components"]["schemas"])


def test_start_list_get_and_deduplicate(dev: HttpDev) -> None:
    first = dev.http.post(
        "/api/runs", json={"workflow": "echo", "payload": {"n": 1}, "run_id": "h-1"}
    )
    assert (first.status_code, first.json()) == (
        201,
        {"run_id": "h-1", "status": "pending", "deduplicated": False},
    )
    again = dev.http.post(
        "/api/runs", json={"workflow": "echo", "payload": {"n": 2}, "run_id": "h-1"}
    )
    assert again.status_code == 200 and again.json()["deduplicated"] is True
    run = dev.parked("h-1")
    assert run["result"] == {"n": 1}
    one = dev.http.get("/api/runs/h-1").json()
    assert (one["status"], one["result"], [s["key"] for s in one["steps"]]) == (
        "completed",
        {"n": 1},
        ["echo"],
    )
    listed = dev.http.get("/api/runs", params={"workflow": "echo", "status": "completed"}).json()
    assert "h-1" in [r["run_id"] for r in listed]
    assert all(r["workflow"] == "echo" for r in listed) and listed
    assert len(dev.http.get("/api/runs", params={"limit": 1}).json()) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_json"),
        (b'{"payload": 1}', 400, "invalid"),
        (b'{"workflow": "echo", "run_id": "has space"}', 400, "invalid"),
        (b'{"workflow": "echo", "delay": "soon"}', 400, "invalid"),
        (b'{"workflow": "nope"}', 404, "unknown_workflow"),
        (b'{"workflow": "echo", "payload": "' + b"x" * 4096 + b'"}', 413, "payload_too_large"),
    ],
)
def test_a_bad_start_is_refused_with_its_code(
    dev: HttpDev, body: bytes, status: int, code: str
) -> None:
    reply = dev.http.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
    assert reply.json()["error"]["message"]


def test_json_laid_out_over_lines_is_taken_whole(dev: HttpDev) -> None:
    """A raw value's line breaks never reach the socket, where a line is one request."""
    json_type = {"content-type": "application/json"}
    body = b'{"workflow": "refund",\n "payload": {\r\n  "amount": 5,\n\t"note": "a\\nb"\n}}'
    started = dev.http.post("/api/runs", content=body, headers=json_type)
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    dev.parked(run_id)
    assert b'"payload":{"amount":5,"note":"a\\nb"}' in dev.http.get(f"/api/runs/{run_id}").content
    signal = b'{"payload": [1,\n 2],\n "ttl": "1m"}'
    sent = dev.http.post("/api/signals/nobody-waits", content=signal, headers=json_type)
    assert (sent.status_code, sent.json()) == (200, {"delivered": 0, "kept": True})
    edit = b'{"action": "edit", "by": "alice", "value": {\n "amount": 6,\n "note": ""\n}}'
    decision = f"/api/approvals/{run_id}:manager/decision"
    edited = dev.http.post(decision, content=edit, headers=json_type)
    assert (edited.status_code, edited.json()["value"]) == (200, {"amount": 6, "note": ""})
    assert dev.http.get("/healthz").json()["status"] == "ok"


def test_unknown_runs_and_routes_are_404(dev: HttpDev) -> None:
    for path in ("/api/runs/no-such-run", "/api/approvals/no:such", "/api/nothing"):
        reply = dev.http.get(path)
        assert reply.status_code == 404 and reply.json()["error"]["code"], path
    assert dev.http.get("/api/runs", params={"status": "sideways"}).status_code == 400


def test_events_to_one_run_signals_cancel_and_retry(dev: HttpDev) -> None:
    run_id = dev.http.post("/api/runs", json={"workflow": "waiter"}).json()["run_id"]
    assert dev.parked(run_id)["status"] == "waiting"
    sent = dev.http.post(f"/api/runs/{run_id}/events", json={"name": "go", "payload": 7})
    assert (sent.status_code, sent.json()) == (200, {"delivered": 1, "kept": False})
    assert dev.parked(run_id)["result"] == 7
    assert dev.http.post("/api/runs/nope/events", json={"name": "go"}).status_code == 404

    kept = dev.http.post("/api/signals/nobody-waits", json={"payload": 1, "ttl": "1h"})
    assert kept.json() == {"delivered": 0, "kept": True}

    waiting = dev.http.post("/api/runs", json={"workflow": "waiter"}).json()["run_id"]
    dev.parked(waiting)
    cancelled = dev.http.post(f"/api/runs/{waiting}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = dev.http.post(f"/api/runs/{waiting}/cancel")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_allowed")
    retried = dev.http.post(f"/api/runs/{waiting}/retry")
    assert (retried.status_code, retried.json()["status"]) == (200, "pending")
    done = dev.http.post(f"/api/runs/{run_id}/retry")  # completed: nothing to retry
    assert done.status_code == 409


def test_approvals_list_show_and_decide(dev: HttpDev) -> None:
    run_id = dev.http.post("/api/runs", json={"workflow": "refund"}).json()["run_id"]
    dev.parked(run_id)
    key = f"{run_id}:manager"
    pending = dev.http.get("/api/approvals", params={"approver": "alice"}).json()
    assert key in [a["key"] for a in pending]
    assert key not in [
        a["key"] for a in dev.http.get("/api/approvals", params={"approver": "zed"}).json()
    ]
    shown = dev.http.get(f"/api/approvals/{key}").json()
    assert (shown["status"], shown["data"], shown["history"][0]["event"]) == (
        "pending",
        {"amount": 120, "note": ""},
        "created",
    )
    assert len(shown["digest"]) >= 16

    decide = f"/api/approvals/{key}/decision"
    no_reason = dev.http.post(decide, json={"action": "reject", "by": "alice"})
    assert (no_reason.status_code, no_reason.json()["error"]["code"]) == (400, "invalid")
    outsider = dev.http.post(decide, json={"action": "approve", "by": "mallory"})
    assert outsider.status_code == 403
    bad_edit = dev.http.post(
        decide, json={"action": "edit", "by": "alice", "value": {"amount": "x"}}
    )
    assert bad_edit.status_code == 400 and "$.amount" in bad_edit.json()["error"]["message"]
    stale = dev.http.post(decide, json={"action": "approve", "by": "alice", "seen": "0" * 64})
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "stale")
    approved = dev.http.post(
        decide, json={"action": "approve", "by": "alice", "seen": shown["digest"]}
    )
    assert (approved.status_code, approved.json()["status"]) == (200, "approved")
    late = dev.http.post(decide, json={"action": "reject", "by": "bob", "reason": "late"})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "not_allowed")
    assert "already approved by alice" in late.json()["error"]["message"]
    assert dev.parked(run_id)["result"] == ["approved", "alice", {"amount": 120, "note": ""}]


def test_credentials_once_a_token_exists(tmp_path: Path) -> None:
    with http_dev(tmp_path / "locked") as dev:
        admin = dev.token("ops", "admin")
        reader = dev.token("viewer", "read")
        alice = dev.token("alice", "decide", "read", "start")

        def no_credentials_refused() -> bool:
            return dev.http.get("/api/runs").status_code == 401

        deadline = time.monotonic() + 10
        while not no_credentials_refused():  # tokens take effect within a second
            assert time.monotonic() < deadline, "calls without a token still allowed"
            time.sleep(0.05)
        bad = dev.http.get("/api/runs", headers={"Authorization": "Bearer tako_nope"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (401, "unauthorized")
        assert dev.as_(reader).get("/api/runs").status_code == 200
        refused = dev.as_(reader).post("/api/runs", json={"workflow": "echo"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")

        run_id = dev.as_(alice).post("/api/runs", json={"workflow": "refund"}).json()["run_id"]
        dev.parked(run_id)
        decide = f"/api/approvals/{run_id}:manager/decision"
        posing = dev.as_(alice).post(decide, json={"action": "approve", "by": "bob"})
        assert posing.status_code == 403  # `by` is honoured for admin credentials only
        on_behalf = dev.as_(admin).post(decide, json={"action": "approve", "by": "bob"})
        assert (on_behalf.status_code, on_behalf.json()["decision"]["by"]) == (200, "bob")

        assert dev.tako("tokens", "revoke", "viewer").code == 0
        deadline = time.monotonic() + 10
        while dev.as_(reader).get("/api/runs").status_code != 401:
            assert time.monotonic() < deadline, "a revoked token still works"
            time.sleep(0.05)


def test_the_actor_of_a_decision_is_the_token_name(tmp_path: Path) -> None:
    with http_dev(tmp_path / "actor") as dev:
        alice = dev.token("alice", "decide", "start")
        run_id = dev.as_(alice).post("/api/runs", json={"workflow": "refund"}).json()["run_id"]
        dev.parked(run_id)
        decided = dev.as_(alice).post(
            f"/api/approvals/{run_id}:manager/decision", json={"action": "approve"}
        )
        assert decided.json()["decision"]["by"] == "alice"


def test_listening_beyond_loopback_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    from cli_harness import make_app  # type: ignore[import-not-found]
    from http_harness import FLOWS

    app = make_app(tmp_path / "open", {"flows.py": FLOWS})
    data_dir = short_data_dir()
    try:
        refused = tako_cmd("dev", str(app), "--data-dir", str(data_dir), "--http", "0.0.0.0:0")
        assert refused.code == 2
        assert "no token" in refused.err and "tako tokens create" in refused.err
    finally:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_default_port_when_taken_moves_to_the_next_free_one(tmp_path: Path) -> None:
    import shutil
    import socket

    from cli_harness import DevServer, make_app  # type: ignore[import-not-found]
    from http_harness import FLOWS, HttpDev

    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen(1)
    except OSError:
        pass  # taken already: by someone else, which is the same case
    app = make_app(tmp_path / "second", {"flows.py": FLOWS})
    data_dir = short_data_dir()
    try:
        server = DevServer(app, data_dir, args=())  # no --http: the default, or the next port
        try:
            dev = HttpDev(server)
            assert dev.url.startswith("http://127.0.0.1:") and not dev.url.endswith(":8787")
            assert dev.http.get("/healthz").status_code == 200
        finally:
            server.kill()
        explicit = tako_cmd(
            "dev", str(app), "--data-dir", str(data_dir), "--http", "127.0.0.1:8787"
        )
        assert explicit.code == 2 and "cannot listen on 127.0.0.1:8787" in explicit.err
    finally:
        holder.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_http_server_outlives_its_supervisor(tmp_path: Path, how: str) -> None:
    import signal

    from tests.procs import http_pids

    with http_dev(tmp_path / "lives") as dev:
        socket = dev.server.socket
        (server,) = http_pids(socket)
        assert dev.http.get("/healthz").status_code == 200
        dev.server.proc.send_signal(getattr(signal, how))
        dev.server.proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while http_pids(socket):  # SIGKILL: it sees its stdin close and exits
            assert time.monotonic() < deadline, f"the HTTP server {server} outlived {how}"
            time.sleep(0.02)
