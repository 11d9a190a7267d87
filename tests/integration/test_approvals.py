"""Human approvals: each decision rule, against a real takod and real workers."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import threading

import pytest
import trio

import tako
from tests.conftest import BOTH_STORES, App, clock_past, eventually, running

pytestmark = BOTH_STORES  # the core of the engine, on SQLite and on PostgreSQL

APPROVALS = """
    from typing import Literal
    import msgspec
    from tako import workflow, ApprovalRejected

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    class Refund(msgspec.Struct):
        order: int
        amount: int

    @workflow
    async def refund(payload, step):
        decision = await step.approval(
            "manager",
            summary=f"Refund ${payload['amount']} for order {payload['order']}",
            data={"order": payload["order"], "amount": payload["amount"]},
            approvers=payload.get("approvers"),
            required=payload.get("required", 1),
            timeout=payload.get("timeout"),
            on_timeout=payload.get("on_timeout", "reject"),
            escalate_after=payload.get("escalate_after"),
            escalate_to=payload.get("escalate_to"),
            remind_every=payload.get("remind_every"),
            type=Refund,
        )
        if decision.approved:
            assert isinstance(decision.value, Refund)
            await step.run("pay", lambda: effect(f"pay:{decision.value.amount}"))
        return {
            "status": decision.status, "by": decision.by, "approved_by": decision.approved_by,
            "value": decision.value, "original": decision.original, "reason": decision.reason,
        }

    @workflow(retries=0)
    async def two_stage(payload, step):
        a = await step.approval("manager", summary="stage 1", approvers=["alice"])
        b = await step.approval("finance", summary="stage 2", approvers=["bob"])
        effect(f"after-approvals:{a.status}:{b.status}")
        await step.run("flaky", lambda: open(EFFECTS + ".ok").read())  # fails until it exists
        return "paid"

    @workflow
    async def email(payload, step):
        def send(args):
            effect(f"sent:{args['to']}:{args['subject']}")
            return args["to"]
        try:
            return await step.gated(
                "send-email", send, payload,
                requires_approval=lambda a: not a["to"].endswith("@example.com"),
                describe=lambda a: f"Email {a['to']}: {a['subject']}",
            )
        except ApprovalRejected as exc:
            return f"not sent: {exc.decision.reason}"
"""


async def parked_key(client: tako.AsyncClient, run_id: str, step: str = "manager") -> str:
    async def waiting() -> bool:
        run = await client.get_run(run_id)
        return run.status == "waiting" and run.waiting_for == f"approval:{run_id}:{step}"

    await eventually(waiting, what=f"{run_id} to wait for approval {step}")
    return f"{run_id}:{step}"


@pytest.fixture
def runtime() -> str:
    return "asyncio"


async def test_approve_resumes_the_run_with_the_decision(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 42, "amount": 120})
        key = await parked_key(client, run_id)
        pending = await client.list_approvals()
        assert [(a.key, a.status, a.summary) for a in pending] == [
            (key, "pending", "Refund $120 for order 42")
        ]
        approval = await client.approve(key, by="alice")
        assert (approval.status, approval.approved_by) == ("approved", ["alice"])
        result = await client.result(run_id, timeout=15)
        shown = await client.get_approval(key)
    assert result == {
        "status": "approved", "by": "alice", "approved_by": ["alice"],
        "value": {"order": 42, "amount": 120}, "original": {"order": 42, "amount": 120},
        "reason": None,
    }  # fmt: skip
    assert app.effects() == ["pay:120"]
    assert [h.event for h in shown.history or []] == ["created", "approved"]
    assert shown.decision is not None and shown.decision["by"] == "alice"
    assert shown.schema is not None and "Refund" in shown.schema["$defs"]  # what edits must be


async def test_reject_needs_a_reason_and_an_edit_must_match_the_type(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        rejected = await client.start("refund", {"order": 1, "amount": 5})
        key = await parked_key(client, rejected)
        with pytest.raises(tako.InvalidRequest):
            await client.reject(key, by="alice", reason="")
        await client.reject(key, by="alice", reason="duplicate")
        assert (await client.result(rejected, timeout=15))["reason"] == "duplicate"

        edited = await client.start("refund", {"order": 2, "amount": 500})
        key = await parked_key(client, edited)
        with pytest.raises(tako.InvalidRequest, match="amount"):
            await client.approve(key, by="bob", value={"order": 2, "amount": "lots"})
        assert (await client.get_approval(key)).status == "pending"  # still pending
        await client.approve(key, by="bob", value={"order": 2, "amount": 300})
        result = await client.result(edited, timeout=15)
        shown = await client.get_approval(key)
    assert (result["status"], result["value"], result["original"]) == (
        "edited", {"order": 2, "amount": 300}, {"order": 2, "amount": 500},
    )  # fmt: skip
    assert app.effects() == ["pay:300"]  # paid what was approved, not what was asked
    (edit,) = [h for h in shown.history or [] if h.event == "edited"]
    assert (edit.actor, edit.value, edit.original) == (
        "bob", {"order": 2, "amount": 300}, {"order": 2, "amount": 500},
    )  # fmt: skip


async def test_quorum_double_clicks_outsiders_and_late_decisions(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start(
            "refund",
            {"order": 3, "amount": 9, "approvers": ["alice", "bob", "carol"], "required": 2},
        )
        key = await parked_key(client, run_id)
        with pytest.raises(tako.NotAllowed, match="mallory may not decide"):
            await client.approve(key, by="mallory")
        first = await client.approve(key, by="alice")
        again = await client.approve(key, by="alice")  # a double click counts once
        assert (first.status, first.approved_by) == ("pending", ["alice"])
        assert (again.status, again.approved_by) == ("pending", ["alice"])
        done = await client.approve(key, by="bob", decision_id="d-1")
        assert (done.status, done.approved_by) == ("approved", ["alice", "bob"])
        assert (await client.approve(key, by="bob", decision_id="d-1")).status == "approved"
        with pytest.raises(tako.NotAllowed, match=r"already approved by bob at 20\d\d-"):
            await client.approve(key, by="carol")
        with pytest.raises(tako.NotAllowed, match="already approved"):
            await client.reject(key, by="alice", reason="changed my mind")
        with pytest.raises(tako.ApprovalNotFound):
            await client.approve("no-such-key", by="alice")
        result = await client.result(run_id, timeout=15)
    assert result["approved_by"] == ["alice", "bob"]


async def test_two_processes_deciding_at_once_record_exactly_one_decision(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        for round_, actions in enumerate([("approve", "reject"), ("approve", "approve")]):
            run_id = await client.start("refund", {"order": 10 + round_, "amount": 1})
            key = await parked_key(client, run_id)
            outcomes: list[str] = []
            barrier = threading.Barrier(2)

            def decide(
                action: str,
                actor: str,
                key: str = key,
                barrier: threading.Barrier = barrier,
                outcomes: list[str] = outcomes,
            ) -> None:
                with app.sync_client() as mine:  # its own connection, like another process
                    barrier.wait()
                    try:
                        if action == "approve":
                            mine.approve(key, by=actor)
                        else:
                            mine.reject(key, by=actor, reason="no")
                        outcomes.append("ok")
                    except tako.NotAllowed as exc:
                        outcomes.append(str(exc))

            threads = [
                threading.Thread(target=decide, args=(action, actor))
                for action, actor in zip(actions, ["alice", "bob"], strict=True)
            ]
            await trio.to_thread.run_sync(lambda threads=threads: [t.start() for t in threads])
            await trio.to_thread.run_sync(lambda threads=threads: [t.join() for t in threads])
            assert outcomes.count("ok") == 1, outcomes
            (refusal,) = [o for o in outcomes if o != "ok"]
            assert "already" in refusal
            shown = await client.get_approval(key)
            decided = [h for h in shown.history or [] if h.event in ("approved", "rejected")]
            assert len(decided) == 1
            await client.result(run_id, timeout=15)


async def test_timeouts_reject_or_fail_and_escalation_adds_approvers(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        timed = await client.start("refund", {"order": 20, "amount": 1, "timeout": "300ms"})
        assert (await client.result(timed, timeout=15))["status"] == "timed_out"
        failing = await client.start(
            "refund", {"order": 21, "amount": 1, "timeout": "300ms", "on_timeout": "fail"}
        )
        with pytest.raises(tako.RunFailed, match="timed out"):
            await client.result(failing, timeout=15)
        escalating = await client.start(
            "refund",
            {
                "order": 22, "amount": 1, "approvers": ["alice"], "escalate_after": "2s",
                "escalate_to": ["carol"], "remind_every": "200ms",
            },
        )  # fmt: skip
        key = await parked_key(client, escalating)
        with pytest.raises(tako.NotAllowed):
            await client.approve(key, by="carol")  # not yet (2 s leave room for a slow machine)
        await eventually(
            lambda: _has_event(client, key, "escalated"), what="the escalation to happen"
        )
        await eventually(lambda: _has_event(client, key, "reminded"), what="a reminder")
        await client.approve(key, by="carol")
        assert (await client.result(escalating, timeout=15))["by"] == "carol"
        shown = await client.get_approval(key)
    assert shown.approvers == ["alice", "carol"]


async def _has_event(client: tako.AsyncClient, key: str, event: str) -> bool:
    return any(h.event == event for h in (await client.get_approval(key)).history or [])


async def test_cancelling_a_run_cancels_its_open_request(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 30, "amount": 1})
        key = await parked_key(client, run_id)
        await client.cancel(run_id)
        shown = await client.get_approval(key)
        assert shown.status == "cancelled"
        assert shown.history is not None and shown.history[-1].event == "cancelled"
        assert await client.list_approvals() == []
        with pytest.raises(tako.NotAllowed):
            await client.approve(key, by="alice")


async def test_gated_calls_run_with_the_approved_arguments(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        internal = await client.start("email", {"to": "ops@example.com", "subject": "hi"})
        assert await client.result(internal, timeout=15) == "ops@example.com"
        external = await client.start("email", {"to": "ceo@rival.com", "subject": "secrets"})
        key = await parked_key(client, external, "send-email")
        await client.approve(key, by="legal", value={"to": "ceo@rival.com", "subject": "hello"})
        assert await client.result(external, timeout=15) == "ceo@rival.com"
        refused = await client.start("email", {"to": "x@rival.com", "subject": "s"})
        key = await parked_key(client, refused, "send-email")
        await client.reject(key, by="legal", reason="not allowed")
        assert await client.result(refused, timeout=15) == "not sent: not allowed"
    assert app.effects() == ["sent:ops@example.com:hi", "sent:ceo@rival.com:hello"]


async def test_a_retried_run_does_not_ask_again(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start("two-stage")
        await client.approve(await parked_key(client, run_id), by="alice")
        await client.approve(await parked_key(client, run_id, "finance"), by="bob")
        with pytest.raises(tako.RunFailed):
            await client.result(run_id, timeout=15)
        (app.dir / "effects.log.ok").write_text("ok")
        await client.retry(run_id)
        assert await client.result(run_id, timeout=15) == "paid"
        after = await client.list_approvals(status=None)
        shown = [await client.get_approval(a.key) for a in after]
    # the two decisions made before the failure stand, untouched: no new requests
    assert [(a.key, a.status, a.approved_by) for a in after] == [
        (f"{run_id}:manager", "approved", ["alice"]),
        (f"{run_id}:finance", "approved", ["bob"]),
    ]
    assert [[h.event for h in a.history or []] for a in shown] == [["created", "approved"]] * 2
    # the body ran twice (failed, then retried) past the cached decisions
    assert app.effects() == ["after-approvals:approved:approved"] * 2


async def test_an_escalation_pending_across_a_restart_still_happens_on_time(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start(
            "refund",
            {"order": 40, "amount": 1, "approvers": ["alice"], "escalate_after": "1s",
             "escalate_to": ["carol"]},
        )  # fmt: skip
        key = await parked_key(client, run_id)
    async with running(app):  # a new supervisor on the same data dir
        client = app.client()
        await eventually(lambda: _has_event(client, key, "escalated"), what="the escalation")
        shown = await client.get_approval(key)
        await client.approve(key, by="carol")
        assert (await client.result(run_id, timeout=15))["by"] == "carol"
    created, escalated = (
        next(h.at for h in shown.history or [] if h.event == event)
        for event in ("created", "escalated")
    )
    assert 1.0 <= (escalated - created).total_seconds() < 3.0


async def test_a_failing_webhook_gets_every_event_once_signed_and_in_order(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[tuple[int, dict[str, str], bytes]] = []  # (status sent, headers, body)

    async def receiver(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        while len(body) < int(headers["Content-Length"]):
            body += await stream.receive_some(65536)
        status = 500 if len(received) < 3 else 200  # the first three deliveries fail
        received.append((status, headers, body))
        await stream.send_all(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await stream.aclose()

    monkeypatch.setenv("TAKO_TEST_SECRET", "s3cret")
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, receiver, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        app.configure(
            approvals={
                "webhook": f"http://127.0.0.1:{port}/hook",
                "webhook_secret_env": "TAKO_TEST_SECRET",
            }
        )
        app.write("approvals.py", APPROVALS)
        async with running(app):
            client = app.client()
            run_id = await client.start("refund", {"order": 50, "amount": 7})
            key = await parked_key(client, run_id)
            await client.approve(key, by="alice")
            await client.result(run_id, timeout=15)
            await eventually(
                lambda: sum(1 for s, _, _ in received if s == 200) >= 2,
                timeout=30,
                what="both events delivered",
            )
        nursery.cancel_scope.cancel()
    delivered = [(h, b) for s, h, b in received if s == 200]
    ids = [h["X-Tako-Event-Id"] for h, _ in delivered]
    assert ids == [f"{key}#1", f"{key}#2"]  # each once, in order
    assert [json.loads(b)["type"] for _, b in delivered] == ["requested", "resolved"]
    assert json.loads(delivered[1][1])["decision"]["by"] == "alice"
    links = json.loads(delivered[0][1])["links"]  # anyone may decide: one set, "*"
    assert list(links) == ["*"] and links["*"]["view"].startswith("http://127.0.0.1:8787/a/")
    assert json.loads(delivered[1][1])["links"] is None
    for headers, body in [(h, b) for _, h, b in received]:
        expected = (
            "sha256="
            + hmac.new(
                b"s3cret", headers["X-Tako-Timestamp"].encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        assert headers["X-Tako-Signature"] == expected
    assert len(received) == 5  # three refused, then the two events


async def test_retrying_a_cancelled_run_asks_again_and_pruning_forgets(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 60, "amount": 3}, run_id="refund-60")
        key = await parked_key(client, run_id)
        await client.cancel(run_id)
        assert (await client.get_approval(key)).status == "cancelled"
        await client.retry(run_id)
        await eventually(lambda: _pending(client, key), what="a new request")
        await client.approve(key, by="alice")
        assert (await client.result(run_id, timeout=15))["status"] == "approved"
        await clock_past((await client.get_run(run_id)).updated_at)
        assert await client.prune(older_than=0) == 1
        with pytest.raises(tako.ApprovalNotFound):
            await client.get_approval(key)
        # the same run id again: a new request, never the old decision
        await client.start("refund", {"order": 60, "amount": 3}, run_id="refund-60")
        await parked_key(client, run_id)
        assert (await client.get_approval(key)).status == "pending"


async def _pending(client: tako.AsyncClient, key: str) -> bool:
    try:
        return (await client.get_approval(key)).status == "pending"
    except tako.ApprovalNotFound:
        return False


async def test_an_edit_restarts_the_count_toward_a_quorum(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start(
            "refund", {"order": 61, "amount": 100, "approvers": ["a", "b", "c"], "required": 2}
        )
        key = await parked_key(client, run_id)
        await client.approve(key, by="a")  # approves 100
        edited = await client.approve(key, by="b", value={"order": 61, "amount": 80})
        assert (edited.status, edited.approved_by) == ("pending", ["b"])  # a never saw 80
        done = await client.approve(key, by="c")
        assert (done.status, done.approved_by) == ("edited", ["b", "c"])
        assert (await client.result(run_id, timeout=15))["value"]["amount"] == 80


async def test_notifiers_get_every_event_in_order_and_a_failing_one_is_retried(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    app.write(
        "notify.py",
        """
        import tako

        def effect(line):
            with open(EFFECTS, "a") as f:
                f.write(line + "\\n")

        calls = {"n": 0}

        @tako.notifier
        def to_chat(event: tako.ApprovalEvent) -> None:
            effect(f"chat:{event.id}:{event.type}:{event.status}")

        @tako.notifier
        async def flaky_pager(event: tako.ApprovalEvent) -> None:
            import os
            marker = EFFECTS + ".pager-" + event.id.replace("#", "-").replace(":", "-")
            if not os.path.exists(marker):  # fails once per event, then works
                open(marker, "w").close()
                raise ConnectionError("pager down")
            effect(f"pager:{event.id}:{event.type}")
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 70, "amount": 4})
        key = await parked_key(client, run_id)
        await client.approve(key, by="alice")
        assert (await client.result(run_id, timeout=15))["status"] == "approved"  # not blocked
        await eventually(
            lambda: sum(line.startswith("pager:") for line in app.effects()) == 2,
            timeout=30,
            what="both events at the pager",
        )
        shown = await client.get_approval(key)
    chat = [line for line in app.effects() if line.startswith("chat:")]
    pager = [line for line in app.effects() if line.startswith("pager:")]
    assert chat == [f"chat:{key}#1:requested:pending", f"chat:{key}#2:resolved:approved"]
    assert pager == [f"pager:{key}#1:requested", f"pager:{key}#2:resolved"]
    assert "notified" in [h.event for h in shown.history or []]
