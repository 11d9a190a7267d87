"""The socket ops behind the HTTP surface: tokens, signed links, `seen`, `watch`.

A real takod and real workers; every error code these ops can answer is asked for.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import stat
import time
from typing import Any

import msgspec
import pytest
import trio

import tako
from tako._errors import error_from_wire
from tako.takod import links
from tests.conftest import App, eventually, running
from tests.integration.test_approvals import APPROVALS, parked_key

BOUND = 10.0  # a watch woken by a change answers well within this


@pytest.fixture
def runtime() -> str:
    return "asyncio"


async def ask(client: tako.AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    return await trio.to_thread.run_sync(functools.partial(_request, client.sync, op, **fields))


def _request(client: tako.Client, op: str, **fields: Any) -> dict[str, Any]:
    """Any op with any fields, the reply as takod sent it: the error codes are the point."""
    line = msgspec.json.encode({"id": 1, "op": op, **fields}) + b"\n"
    reply: dict[str, Any] = msgspec.json.decode(client._exchange(line))
    if not reply["ok"]:
        raise error_from_wire(reply["error"]["code"], reply["error"]["message"])
    return reply


async def refused(client: tako.AsyncClient, op: str, **fields: Any) -> tako.TakoError:
    with pytest.raises(tako.TakoError) as info:
        await ask(client, op, **fields)
    return info.value


def code(err: tako.TakoError) -> str:
    return type(err).code


# -- tokens -----------------------------------------------------------------------------


async def test_tokens_take_effect_at_once_and_only_their_hash_is_stored(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app) as sup:
        client = app.client()
        assert await ask(client, "access") | {"id": 0} == {
            "id": 0, "ok": True, "name": None, "scopes": [], "tokens": 0,
        }  # fmt: skip
        made = await client.create_token("ci", ["read", "decide", "read"])
        assert made.name == "ci" and made.scopes == ["read", "decide"]
        assert made.token.startswith("tako_") and len(made.token) > 40
        who = await ask(client, "access", token=made.token)
        assert (who["name"], who["scopes"], who["tokens"]) == ("ci", ["read", "decide"], 1)
        assert (await ask(client, "access"))["tokens"] == 1

        listed = await client.list_tokens()
        assert [(t.name, t.scopes) for t in listed] == [("ci", ["read", "decide"])]
        raw = await ask(client, "list_tokens")
        assert set(raw["tokens"][0]) == {"name", "scopes", "created_at"}

        again = await refused(client, "create_token", name="ci", scopes=["admin"])
        assert code(again) == "not_allowed" and "revoke it first" in again.message
        assert code(await refused(client, "access", token=made.token + "x")) == "unauthorized"
        bad_scope = await refused(client, "create_token", name="x", scopes=["root"])
        assert code(bad_scope) == "invalid"

        with sqlite3.connect(f"file:{sup.db_path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT name, hash FROM tokens").fetchall()
        hashed = __import__("hashlib").sha256(made.token.encode()).hexdigest()
        assert rows == [("ci", hashed)]
        for path in sup.db_path.parent.iterdir():  # the database and its WAL
            assert made.token.encode() not in path.read_bytes()

        await client.revoke_token("ci")
        assert code(await refused(client, "access", token=made.token)) == "unauthorized"
        assert (await ask(client, "access"))["tokens"] == 0
        with pytest.raises(tako.RunNotFound, match="no token named 'ci'"):
            await client.revoke_token("ci")
        assert await client.list_tokens() == []


# -- signed links -----------------------------------------------------------------------


class MovableClock:
    """Wall time plus an offset a test can move forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


def token_of(url: str) -> str:
    return url.split("/a/", 1)[1].split("?", 1)[0]


async def test_links_open_and_a_tampered_or_expired_one_is_told_apart(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    clock = MovableClock()
    async with running(app, clock=clock):
        client = app.client()
        run_id = await client.start("refund", {"order": 1, "amount": 5, "approvers": ["a", "b"]})
        key = await parked_key(client, run_id)
        made = await client.approval_links(key)
        assert set(made) == {"a", "b"}
        assert made["a"]["view"].startswith("http://127.0.0.1:8787/a/")
        assert made["a"]["approve"] == made["a"]["view"] + "?action=approve"
        assert made["a"]["reject"] == made["a"]["view"] + "?action=reject"

        opened = await ask(client, "open_link", token=token_of(made["b"]["approve"]))
        assert (opened["key"], opened["approver"]) == (key, "b")
        assert opened["approval"]["status"] == "pending"
        assert [h["event"] for h in opened["approval"]["history"]] == ["created"]
        assert opened["expires_at"].endswith("Z")

        token = token_of(made["a"]["view"])
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert code(await refused(client, "open_link", token=tampered)) == "link_tampered"
        assert code(await refused(client, "open_link", token="nonsense")) == "link_tampered"

        secret_file = app.data_dir / "http.secret"  # generated once, private
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        old = links.sign(secret_file.read_bytes().strip(), key, "a", clock.now_ms() - 1)
        assert code(await refused(client, "open_link", token=old)) == "link_expired"

        clock.offset_ms = 31 * 86400 * 1000  # no deadline: links last 30 days
        assert code(await refused(client, "open_link", token=token)) == "link_expired"
        clock.offset_ms = 0

        anyone = await client.start("refund", {"order": 2, "amount": 5}, run_id="anyone")
        assert list(await client.approval_links(await parked_key(client, anyone))) == ["*"]
        with pytest.raises(tako.ApprovalNotFound):
            await client.approval_links("nope:manager")
        secret = secret_file.read_bytes()

    async with running(app):  # the key survives a restart: old links still open
        opened = await ask(app.client(), "open_link", token=token)
        assert opened["approver"] == "a"
    assert secret_file.read_bytes() == secret


async def test_the_link_key_comes_from_the_configured_variable(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.write("approvals.py", APPROVALS)
    app.configure(http={"secret_env": "MY_LINK_KEY", "public_url": "https://ok.example/"})
    monkeypatch.setenv("MY_LINK_KEY", "s3cret")
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 1, "amount": 5, "approvers": ["a"]})
        made = await client.approval_links(await parked_key(client, run_id))
    assert made["a"]["view"].startswith("https://ok.example/a/")
    claims = links.verify(b"s3cret", token_of(made["a"]["view"]), int(time.time() * 1000))
    assert claims.approver == "a"
    assert not (app.data_dir / "http.secret").exists()


NOTIFIER = """
    import json
    import tako

    @tako.notifier
    def record(event: tako.ApprovalEvent) -> None:
        with open(EFFECTS, "a") as f:
            f.write(json.dumps({"type": event.type, "links": event.links}) + "\\n")
"""


async def test_approval_events_to_notifiers_carry_the_links(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    app.write("notify.py", NOTIFIER)
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 7, "amount": 5, "approvers": ["a", "b"]})
        key = await parked_key(client, run_id)

        def events() -> list[dict[str, Any]]:
            return [json.loads(line) for line in app.effects() if line.startswith("{")]

        await eventually(events, what="the requested event")
        await client.approve(key, by="a")
        await eventually(lambda: len(events()) == 2, what="the resolved event")
        events_ = events()
        assert [e["type"] for e in events_] == ["requested", "resolved"]
        sent = events_[0]["links"]
        assert sent == await client.approval_links(key)
        assert (await ask(client, "open_link", token=token_of(sent["b"]["view"])))["key"] == key
        assert events_[1]["links"] is None


# -- seen: nobody approves what they did not see -----------------------------------------


async def test_a_decision_on_a_stale_value_is_refused_and_the_request_stays_pending(
    app: App,
) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        run_id = await client.start(
            "refund", {"order": 3, "amount": 50, "approvers": ["a", "b", "c"], "required": 2}
        )
        key = await parked_key(client, run_id)
        shown = await client.get_approval(key)
        assert shown.value == {"order": 3, "amount": 50}
        edited = await client.approve(key, by="b", value={"order": 3, "amount": 40})
        assert edited.value == {"order": 3, "amount": 40} and edited.digest != shown.digest

        for op, extra in (("approve", {}), ("reject", {"reason": "no"}), ("cancel_approval", {})):
            stale = await refused(client, op, key=key, by="a", seen=shown.digest, **extra)
            assert code(stale) == "stale", op
            assert '"amount":40' in stale.message.replace(" ", "")
        still = await client.get_approval(key)
        assert (still.status, still.approved_by) == ("pending", ["b"])
        assert [h.event for h in still.history or []] == ["created", "edited"]

        done = await client.approve(key, by="a", seen=edited.digest)
        assert (done.status, done.approved_by) == ("edited", ["b", "a"])
        result = await client.result(run_id, timeout=15)
    assert result["value"] == {"order": 3, "amount": 40}


# -- watch ------------------------------------------------------------------------------

WATCHED = """
    import asyncio, os
    from tako import workflow

    async def gate(path):
        while not os.path.exists(path):
            await asyncio.sleep(0.01)

    @workflow(retries=0)
    async def watched(payload, step):
        await gate(payload["gate1"])  # plain code: nothing is saved until it passes
        got = await step.wait_for("go")
        async def blocked():
            await gate(payload["gate2"])
            return got
        await step.run("save", blocked)
        await gate(payload["gate3"])  # nothing after the step's save wakes a watcher
        return got
"""


async def watch(client: tako.AsyncClient, **fields: Any) -> dict[str, Any]:
    """One `watch`, which must answer within BOUND unless it was asked to wait longer."""
    started = trio.current_time()
    reply = await ask(client, "watch", **fields)
    if reply["changed"] and fields.get("fingerprint") is not None:
        elapsed = trio.current_time() - started
        assert elapsed < BOUND, f"watch woke after {elapsed:.1f}s"
    return reply


async def watch_until(
    client: tako.AsyncClient, fingerprint: str, done: Any, **target: str
) -> dict[str, Any]:
    """Follow the object's changes (each wake within BOUND) until `done(reply)`."""
    while True:
        reply = await watch(client, fingerprint=fingerprint, timeout=60, **target)
        assert reply["changed"]
        if done(reply):
            return reply
        fingerprint = reply["fingerprint"]


async def test_watch_a_run_wakes_on_a_park_a_signal_and_a_step(app: App) -> None:
    app.write("watched.py", WATCHED)
    gates = {f"gate{n}": app.dir / f"gate{n}" for n in (1, 2, 3)}
    gate1, gate2, gate3 = gates.values()
    async with running(app) as sup:
        client = app.client()
        run_id = await client.start("watched", {k: str(v) for k, v in gates.items()})
        first = await watch(client, run_id=run_id)  # no fingerprint: answered at once
        assert first["changed"] and first["run"]["run_id"] == run_id
        assert len(first["fingerprint"]) == 64
        running_ = first
        if first["run"]["status"] != "running":  # not claimed yet: the claim wakes it too
            running_ = await watch_until(
                client, first["fingerprint"], lambda r: r["run"]["status"] == "running",
                run_id=run_id,
            )  # fmt: skip

        async with trio.open_nursery() as nursery:
            parked: dict[str, Any] = {}

            async def follow() -> None:
                parked.update(
                    await watch(client, run_id=run_id, fingerprint=running_["fingerprint"])
                )

            nursery.start_soon(follow)
            await eventually(lambda: sup.changes.runs.get(run_id), what="the watch to register")
            gate1.touch()
        assert parked["changed"] and parked["run"]["status"] == "waiting"

        quiet = await watch(client, run_id=run_id, fingerprint=parked["fingerprint"], timeout=0.3)
        assert not quiet["changed"] and quiet["fingerprint"] == parked["fingerprint"]
        assert quiet["run"] == parked["run"]

        await client.signal("go", "yes", run_id=run_id)
        woken = await watch_until(
            client, parked["fingerprint"], lambda r: r["run"]["status"] == "running",
            run_id=run_id,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            saved: dict[str, Any] = {}

            def has_saved(reply: dict[str, Any]) -> bool:
                return any(s["key"] == "save" for s in reply["run"]["steps"])

            async def follow_step() -> None:
                fingerprint = woken["fingerprint"]
                saved.update(await watch_until(client, fingerprint, has_saved, run_id=run_id))

            nursery.start_soon(follow_step)
            await eventually(lambda: sup.changes.runs.get(run_id), what="the watch to register")
            gate2.touch()
        assert [s["key"] for s in saved["run"]["steps"]] == ["go", "save"]
        assert saved["run"]["status"] == "running"  # woken by the step, not by the end
        gate3.touch()
        assert (await client.result(run_id, timeout=15)) == "yes"
    assert not sup.changes.runs  # nothing left behind


async def test_watch_an_approval_wakes_on_a_decision_and_times_out_unchanged(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app) as sup:
        client = app.client()
        run_id = await client.start(
            "refund", {"order": 9, "amount": 5, "approvers": ["a", "b"], "required": 2}
        )
        key = await parked_key(client, run_id)
        first = await watch(client, key=key)
        assert first["changed"] and first["approval"]["digest"]
        assert first["approval"]["history"] is not None
        quiet = await watch(client, key=key, fingerprint=first["fingerprint"], timeout=0.2)
        assert (quiet["changed"], quiet["fingerprint"]) == (False, first["fingerprint"])

        async with trio.open_nursery() as nursery:
            seen: dict[str, Any] = {}

            async def follow() -> None:
                seen.update(await watch(client, key=key, fingerprint=first["fingerprint"]))

            nursery.start_soon(follow)
            await eventually(lambda: sup.changes.approvals, what="the watch")
            await client.approve(key, by="a")
        assert seen["changed"] and seen["approval"]["approved_by"] == ["a"]


async def test_watch_refuses_a_bad_target(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    async with running(app):
        client = app.client()
        both = await refused(client, "watch", run_id="r", key="r:m")
        assert code(both) == "invalid" and "exactly one" in both.message
        assert code(await refused(client, "watch")) == "invalid"
        assert code(await refused(client, "watch", run_id="nope")) == "not_found"
        assert code(await refused(client, "watch", key="nope:m")) == "approval_not_found"
        assert code(await refused(client, "watch", run_id="r", timeout=-1)) == "invalid"


async def test_watch_an_approval_sees_the_notified_entry_of_its_first_delivery(app: App) -> None:
    app.write("approvals.py", APPROVALS)
    app.write(
        "chat.py",
        """
        import os, time
        import tako

        @tako.notifier
        def held(event):
            while not os.path.exists(EFFECTS + ".go"):  # delivered when the test says go
                time.sleep(0.01)
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("refund", {"order": 9, "amount": 5, "approvers": ["a"]})
        key = await parked_key(client, run_id)
        first = await watch(client, key=key)
        assert [h["event"] for h in first["approval"]["history"]] == ["created"]
        (app.dir / "effects.log.go").write_text("")
        seen = await watch(client, key=key, fingerprint=first["fingerprint"], timeout=BOUND)
        assert seen["changed"], "the delivery's `notified` entry woke no watcher"
        assert [h["event"] for h in seen["approval"]["history"]] == ["created", "notified"]
