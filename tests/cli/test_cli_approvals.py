"""Approvals from the command line: list, show, approve, reject, cancel.

Against a real `tako dev`: the JSON shapes, the exit codes of every refusal,
`--value` sources, `runs show` drawing an approval chain, reads while the
supervisor is down, and the example app's expense chain approved stage by
stage. The renderers are also tested pure, with a fixed clock.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_harness import ISO_UTC, DevServer, make_app, short_data_dir, tako_cmd

from tako.cli.events import EventFormatter
from tako.cli.render import render_run, render_runs
from tako.cli.render_approvals import render_approval, render_approvals, render_decided

REPO = Path(__file__).resolve().parents[2]
APPROVAL_KEYS = {
    "key",
    "run_id",
    "workflow",
    "step",
    "status",
    "summary",
    "data",
    "value",
    "digest",
    "schema",
    "approvers",
    "required",
    "approved_by",
    "decision",
    "created_at",
    "deadline_at",
}
HISTORY_KEYS = {"at", "event", "actor", "value", "original", "reason"}

FLOWS = """
    import msgspec
    from tako import Step, workflow

    class Refund(msgspec.Struct):
        order: int
        amount: int

    @workflow(retries=0)
    async def refund(payload, step: Step):
        decision = await step.approval(
            "manager",
            summary=f"Refund ${payload['amount']} for order {payload['order']}",
            data={"order": payload["order"], "amount": payload["amount"]},
            approvers=payload.get("approvers", ["alice", "bob"]),
            required=payload.get("required", 1),
            timeout="1h",
            type=Refund,
        )
        if not decision.approved:
            step.bail(f"{decision.status}: {decision.reason}")
        return {"paid": decision.value.amount, "by": decision.by}

    @workflow(retries=0)
    async def chain(payload, step: Step):
        first = await step.approval("manager", summary="stage 1", approvers=["alice"])
        second = await step.approval("finance", summary="stage 2", approvers=["bob"], timeout="2h")
        return [first.status, second.status]
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    app = make_app(tmp_path_factory.mktemp("appr") / "apprshop", {"flows.py": FLOWS})
    data_dir = short_data_dir()
    server = DevServer(app, data_dir)
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def parked(server: DevServer, run_id: str, step: str = "manager") -> str:
    """Wait until the run waits for the approval `step`; return the request's key."""
    key = f"{run_id}:{step}"
    server.wait_for(
        lambda: server.client().get_run(run_id).waiting_for == f"approval:{key}",
        what=f"{run_id} to wait for approval {step}",
    )
    return key


def start(server: DevServer, workflow: str, payload: Any, run_id: str) -> str:
    done = server.tako("run", workflow, json.dumps(payload), "--id", run_id)
    assert done.code == 0, done.err
    return run_id


def assert_approval_object(approval: dict[str, Any], *, history: bool) -> None:
    assert set(approval) == APPROVAL_KEYS | ({"history"} if history else set())
    assert ISO_UTC.match(approval["created_at"])
    for entry in approval.get("history") or []:
        assert set(entry) == HISTORY_KEYS
        assert ISO_UTC.match(entry["at"])


def test_list_and_show_print_approval_objects(shop: DevServer) -> None:
    first = start(shop, "refund", {"order": 1, "amount": 10}, "list-1")
    key = parked(shop, first)
    second = start(shop, "refund", {"order": 2, "amount": 20, "approvers": None}, "list-2")
    parked(shop, second)

    listed = shop.tako("approvals", "--json", "--workflow", "refund")
    assert listed.code == 0, listed.err
    mine = [a for a in listed.json() if a["run_id"] in (first, second)]
    assert [a["key"] for a in mine] == [key, f"{second}:manager"]  # oldest first
    for approval in mine:
        assert_approval_object(approval, history=False)
    masked = {"created_at": "-", "deadline_at": "-", "digest": "-", "schema": "-"}
    assert mine[0] | masked == {
        "key": key,
        "run_id": first,
        "workflow": "refund",
        "step": "manager",
        "status": "pending",
        "summary": "Refund $10 for order 1",
        "data": {"order": 1, "amount": 10},
        "value": {"order": 1, "amount": 10},
        "digest": "-",
        "schema": "-",
        "approvers": ["alice", "bob"],
        "required": 1,
        "approved_by": [],
        "decision": None,
        "created_at": "-",
        "deadline_at": "-",
    }
    assert ISO_UTC.match(mine[0]["deadline_at"])
    assert re.fullmatch(r"[0-9a-f]{64}", mine[0]["digest"])
    assert mine[0]["schema"]["$defs"]["Refund"]["required"] == ["order", "amount"]  # the type=
    assert mine[1]["approvers"] is None  # anyone

    for_carol = shop.tako("approvals", "--approver", "carol", "--json").json()
    assert {a["key"] for a in for_carol} >= {f"{second}:manager"}
    assert key not in {a["key"] for a in for_carol}  # carol may not decide it
    assert shop.tako("approvals", "--workflow", "nope", "--json").json() == []

    shown = shop.tako("approvals", "show", key, "--json")
    assert shown.code == 0, shown.err
    assert_approval_object(shown.json(), history=True)
    assert [h["event"] for h in shown.json()["history"]] == ["created"]
    before = tako_cmd("--data-dir", shop.data_dir, "approvals", "--json", "show", key)
    assert before.code == 0 and before.json() == shown.json()  # global options anywhere

    text = shop.tako("approvals", "--workflow", "refund").out
    assert "KEY" in text and "WHO MAY DECIDE" in text
    (row,) = [line for line in text.splitlines() if line.startswith(f"{key} ")]
    assert row.split()[1:7] == ["refund", "Refund", "$10", "for", "order", "1"]
    assert row.split()[7:9] == ["alice,", "bob"]
    assert "anyone" in text and "59m" in text


def test_approve_then_a_different_decision_is_refused_with_the_state(shop: DevServer) -> None:
    key = parked(shop, start(shop, "refund", {"order": 3, "amount": 30}, "appr-1"))
    approved = shop.tako("approve", key, "--by", "alice", "--json")
    assert approved.code == 0, approved.err
    assert_approval_object(approved.json(), history=False)
    assert approved.json()["status"] == "approved"
    assert approved.json()["decision"]["by"] == "alice"
    assert ISO_UTC.match(approved.json()["decision"]["decided_at"])

    again = shop.tako("approve", key, "--by", "alice")  # a double click: fine
    assert again.code == 0, again.err
    assert f"{key} approved by alice" in again.out

    other = shop.tako("reject", key, "--by", "bob", "--reason", "too late")
    assert other.code == 1
    assert f"Error: {key} is already approved by alice at 20" in other.err
    late = shop.tako("approve", key, "--by", "bob")
    assert late.code == 1 and "already approved by alice" in late.err
    run = shop.wait_status("appr-1", "completed")
    assert run["result"] == {"paid": 30, "by": "alice"}


def test_refusals_exit_1_and_the_request_stays_pending(shop: DevServer, tmp_path: Path) -> None:
    key = parked(shop, start(shop, "refund", {"order": 4, "amount": 40}, "refuse-1"))
    outsider = shop.tako("approve", key, "--by", "mallory")
    assert outsider.code == 1
    assert "mallory may not decide" in outsider.err
    wrong = shop.tako("approve", key, "--by", "bob", "--value", '{"order": 4, "amount": "lots"}')
    assert wrong.code == 1
    assert "does not match the request's type" in wrong.err and "$.amount" in wrong.err
    unknown = shop.tako("approve", "no-such-run:manager", "--by", "alice")
    assert unknown.code == 1 and "no approval request" in unknown.err
    assert shop.tako("approvals", "show", "no-such-run:manager").code == 1
    assert shop.tako("approvals", "show", key, "--json").json()["status"] == "pending"

    # Wrong command lines: exit 2, nothing sent.
    no_reason = shop.tako("reject", key, "--by", "alice")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    assert shop.tako("reject", key, "--by", "alice", "--reason", " ").code == 2
    assert shop.tako("approve", key).code == 2  # no --by
    bad_json = shop.tako("approve", key, "--by", "bob", "--value", "{oops")
    assert bad_json.code == 2 and "invalid JSON" in bad_json.err

    # An edited value from a file: decided as "edited", value and original in the history.
    edit = tmp_path / "edit.json"
    edit.write_text('{"order": 4, "amount": 25}')
    edited = shop.tako("approve", key, "--by", "bob", "--value", f"@{edit}", "--json")
    assert edited.code == 0, edited.err
    assert edited.json()["status"] == "edited"
    assert edited.json()["decision"]["value"] == {"order": 4, "amount": 25}
    assert edited.json()["decision"]["original"] == {"order": 4, "amount": 40}
    shown = shop.tako("approvals", "show", key, "--json").json()
    (entry,) = [h for h in shown["history"] if h["event"] == "edited"]
    assert (entry["actor"], entry["value"], entry["original"]) == (
        "bob",
        {"order": 4, "amount": 25},
        {"order": 4, "amount": 40},
    )
    assert "edited by bob: amount 40 → 25" in shop.tako("approvals", "show", key).out
    assert shop.wait_status("refuse-1", "completed")["result"] == {"paid": 25, "by": "bob"}


def test_reject_cancel_and_a_quorum(shop: DevServer) -> None:
    rejected = parked(shop, start(shop, "refund", {"order": 5, "amount": 50}, "rej-1"))
    done = shop.tako("reject", rejected, "--by", "bob", "--reason", "duplicate", "--json")
    assert done.code == 0, done.err
    assert (done.json()["status"], done.json()["decision"]["reason"]) == ("rejected", "duplicate")
    assert shop.wait_status("rej-1", "cancelled")["error"] == "rejected: duplicate"

    cancelled = parked(shop, start(shop, "refund", {"order": 6, "amount": 60}, "can-1"))
    done = shop.tako("approvals", "cancel", cancelled, "--by", "alice", "--reason", "moot")
    assert done.code == 0, done.err
    assert f"{cancelled} cancelled by alice: moot" in done.out
    shown = shop.tako("approvals", "show", cancelled, "--json").json()
    assert (shown["status"], shown["history"][-1]["event"]) == ("cancelled", "cancelled")
    assert shop.wait_status("can-1", "cancelled")["error"] == "cancelled: moot"

    payload = {"order": 7, "amount": 70, "approvers": ["alice", "bob", "carol"], "required": 2}
    quorum = parked(shop, start(shop, "refund", payload, "quorum-1"))
    first = shop.tako("approve", quorum, "--by", "carol")
    assert first.code == 0, first.err
    assert "approved by carol (1 of 2); waiting for 1 more approval from alice, bob" in first.out
    listed = shop.tako("approvals", "--workflow", "refund").out
    assert "alice, bob, carol (2 of 3; approved by carol)" in listed
    second = shop.tako("approve", quorum, "--by", "alice", "--json").json()
    assert (second["status"], second["approved_by"]) == ("approved", ["carol", "alice"])


def test_runs_show_draws_the_approval_chain(shop: DevServer) -> None:
    run_id = start(shop, "chain", None, "chain-1")
    first = parked(shop, run_id)
    waiting = shop.tako("runs", "show", run_id).out
    assert f"├ approval manager  waiting    (key {first}, approvers alice; no deadline)" in waiting
    assert f"│ run parks (no CPU burn) until a decision: tako approve {first} --by <you>" in waiting
    assert f"└ waiting for approval {first} from alice (no deadline)" in waiting

    assert shop.tako("approve", first, "--by", "alice").code == 0
    second = parked(shop, run_id, "finance")
    text = shop.tako("runs", "show", run_id).out
    assert "◄ approved by alice" in text
    assert f"├ approval finance  waiting    (key {second}, approvers bob; until " in text
    as_json = shop.tako("runs", "show", run_id, "--json").json()
    kinds = [(s["key"], s["kind"], s["status"]) for s in as_json["steps"]]
    assert kinds == [("manager", "approval", "completed"), ("finance", "approval", "waiting")]
    assert as_json["steps"][0]["result"]["by"] == "alice"
    assert isinstance(as_json["steps"][0]["result"]["decided_at"], int)

    assert shop.tako("reject", second, "--by", "bob", "--reason", "over budget").code == 0
    shop.wait_status(run_id, "completed")
    text = shop.tako("runs", "show", run_id).out
    assert "◄ rejected by bob: over budget" in text
    assert '└ completed → ["approved", "rejected"]' in text

    log = shop.log()
    assert f"⏸ waiting for approval {first} (tako approve {first} --by <you>)" in log
    assert log.count(f"waiting for approval {first}") == 1  # no step.log line beside it
    assert f"◄ approval {first} approved" in log


def test_approve_with_the_supervisor_down_is_exit_3() -> None:
    data_dir = short_data_dir()
    try:
        done = tako_cmd("approve", "r1:manager", "--by", "alice", "--data-dir", data_dir)
        assert done.code == 3
        assert "tako dev" in done.err and str(data_dir / "tako.sock") in done.err
        assert tako_cmd("approvals", "--data-dir", data_dir).code == 3  # and nothing to read
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# -- the example app's expense chain ----------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    app = tmp_path / "workflows_example"
    ignore = shutil.ignore_patterns(".tako", "__pycache__")
    shutil.copytree(REPO / "workflows_example", app, ignore=ignore)
    data_dir = short_data_dir()
    try:
        yield app, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_expense_chain_is_approved_stage_by_stage(example: tuple[Path, Path]) -> None:
    app, data_dir = example
    server = DevServer(app, data_dir)
    try:
        expense = {"employee": "dana", "amount": 12500, "description": "conference booth"}
        run_id = start(server, "expense-approval", expense, "exp-1")
        small = start(server, "expense-approval", {"employee": "eve", "amount": 80}, "exp-2")
        server.tako("approve", parked(server, small), "--by", "manager")
        assert server.wait_status(small, "completed")["result"]["approved_by"] == {
            "manager": "manager"
        }

        key = parked(server, run_id)
        pending = server.tako("approvals", "--json").json()
        assert [(a["key"], a["approvers"]) for a in pending] == [(key, ["manager"])]
        assert server.tako("approve", key, "--by", "finance").code == 1  # not their stage
        assert server.tako("approve", key, "--by", "manager").code == 0
        finance = parked(server, run_id, "finance")

        # takod stops: the chain is in runs.db, readable, and decisions wait for it.
        assert server.stop() == 0
        offline = tako_cmd("approvals", "--json", "--data-dir", data_dir, cwd=app)
        assert offline.code == 0, offline.err
        assert "supervisor not running" in offline.err
        assert [a["key"] for a in offline.json()] == [finance]
        shown = tako_cmd("approvals", "show", finance, "--data-dir", data_dir, cwd=app)
        assert shown.code == 0 and "approvers  finance" in shown.out
        drawn = tako_cmd("runs", "show", run_id, "--data-dir", data_dir, cwd=app).out
        assert "◄ approved by manager" in drawn
        assert f"(key {finance}, approvers finance; until " in drawn
        down = tako_cmd("approve", finance, "--by", "finance", "--data-dir", data_dir, cwd=app)
        assert down.code == 3

        server = DevServer(app, data_dir)
        assert server.tako("approve", finance, "--by", "finance").code == 0
        ceo = parked(server, run_id, "ceo")
        assert server.tako("approve", ceo, "--by", "ceo").code == 0
        run = server.wait_status(run_id, "completed")
        assert run["result"] == {
            "paid": 12500.0,
            "payment": "pay_exp-1",
            "approved_by": {"manager": "manager", "finance": "finance", "ceo": "ceo"},
        }
        text = server.tako("runs", "show", run_id).out
        for stage in ("manager", "finance", "ceo"):
            assert f"◄ approved by {stage}" in text
        outbox = app / ".tako" / "outbox"
        assert len((outbox / "reimbursements.jsonl").read_text().splitlines()) == 2

        rejected = start(server, "expense-approval", {"employee": "fay", "amount": 5000}, "exp-3")
        server.tako("approve", parked(server, rejected), "--by", "manager")
        finance = parked(server, rejected, "finance")
        server.tako("reject", finance, "--by", "finance", "--reason", "no receipt")
        assert server.wait_status(rejected, "cancelled")["error"] == "finance rejected: no receipt"
        emails = (outbox / "emails.txt").read_text()
        assert "to fay: finance said no to your expense: no receipt" in emails
        assert server.stop() == 0
    finally:
        server.kill()


# -- the renderers, pure ----------------------------------------------------------------------

NOW = datetime(2026, 11, 21, 5, 45, tzinfo=UTC)
ISO = "2026-11-21T05:42:32.000Z"


def approval(status: str = "pending", **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": "r1:manager",
        "run_id": "r1",
        "workflow": "refund",
        "step": "manager",
        "status": status,
        "summary": "Refund $120 for order 42",
        "data": {"order": 42, "amount": 120},
        "approvers": ["alice", "bob", "carol"],
        "required": 2,
        "approved_by": ["alice"],
        "decision": None,
        "created_at": ISO,
        "deadline_at": "2026-11-22T05:42:32.000Z",
    }
    out.update(fields)
    return out


def step(key: str, status: str, result: Any = None) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "kind": "approval",
        "status": status,
        "result": result,
        "error": None,
        "attempts": 1,
        "started_at": ISO,
        "finished_at": "2026-11-21T05:43:32.000Z" if status == "completed" else None,
        "wake_at": None,
    }


def decided(status: str, by: str | None, **fields: Any) -> dict[str, Any]:
    out = {
        "status": status,
        "approved": status in ("approved", "edited"),
        "value": {"order": 42, "amount": 120},
        "by": by,
        "approved_by": [by] if status in ("approved", "edited") else [],
        "reason": None,
        "original": {"order": 42, "amount": 120},
        "decided_at": 1795239812000,
    }
    out.update(fields)
    return out


def test_an_approval_chain_is_drawn_with_each_decision() -> None:
    steps = [
        step("manager", "completed", decided("approved", "alice")),
        step("finance", "completed", decided("edited", "bob", value={"order": 42, "amount": 90})),
        step("legal", "completed", decided("rejected", "carol", reason="no receipt")),
        step("ceo", "completed", decided("timed_out", None)),
        step("board", "waiting"),
    ]
    run = {
        "run_id": "r1",
        "workflow": "refund",
        "status": "waiting",
        "payload": None,
        "result": None,
        "error": None,
        "attempts": 1,
        "created_at": ISO,
        "updated_at": ISO,
        "wake_at": None,
        "waiting_for": "approval:r1:board",
        "steps": steps,
    }
    board = approval(key="r1:board", step="board")
    text = render_run(run, now=NOW, tz=UTC, approvals={"board": board})
    assert "waits for  approval r1:board from alice, bob, carol (2 of 3; approved by alice)" in text
    assert "├ approval manager  completed  1m" in text
    assert "◄ approved by alice" in text
    assert "◄ edited by bob: amount 120 → 90" in text
    assert "◄ rejected by carol: no receipt" in text
    assert "◄ timed out" in text
    assert (
        "├ approval board    waiting    (key r1:board, approvers alice, bob, carol"
        " (2 of 3; approved by alice); until Nov 22 05:42 (in 23h 57m))"
    ) in text
    assert "│ run parks (no CPU burn) until a decision: tako approve r1:board --by <you>" in text
    bare = render_run(run, now=NOW, tz=UTC)  # without the approval object: the key only
    assert "├ approval board    waiting    (key r1:board)" in bare
    assert render_runs([run], now=NOW).endswith("for approval r1:board")


def test_the_approvals_table_and_one_request() -> None:
    rows = [
        approval(),
        approval(key="r2:ok", approvers=None, required=1, approved_by=[], deadline_at=None),
    ]
    table = render_approvals(rows, now=NOW).splitlines()
    assert table[0].split() == ["KEY", "WORKFLOW", "SUMMARY", "WHO", "MAY", "DECIDE", "LEFT"]
    assert table[1].endswith("alice, bob, carol (2 of 3; approved by alice)  23h 57m")
    assert table[2].endswith("anyone                                         no deadline")
    assert table[3].startswith("decide: tako approve KEY --by NAME")
    assert render_approvals([], now=NOW) == "no pending approvals"

    history = [
        {"at": ISO, "event": "created"},
        {"at": ISO, "event": "reminded"},
        {"at": ISO, "event": "escalated", "value": ["dave"]},
        {"at": ISO, "event": "approved", "actor": "alice"},
        {
            "at": ISO,
            "event": "edited",
            "actor": "bob",
            "value": {"order": 42, "amount": 90},
            "original": {"order": 42, "amount": 120},
        },
        {"at": ISO, "event": "cancelled", "reason": "the run ended"},
    ]
    edited = decided("edited", "bob", value={"order": 42, "amount": 90}, decided_at=ISO)
    text = render_approval(approval("edited", decision=edited, history=history), now=NOW, tz=UTC)
    for line in [
        "approval   r1:manager",
        "run        r1 (refund) · step manager",
        "status     edited",
        "approvers  alice, bob, carol",
        "required   2 approvals · approved by alice (1 of 2)",
        "decision   edited by bob: amount 120 → 90 at 05:42:32",
        '  {"order": 42, "amount": 120}',
        "  05:42:32  created",
        "  05:42:32  reminded",
        "  05:42:32  escalated (+dave)",
        "  05:42:32  approved by alice",
        "  05:42:32  edited by bob: amount 120 → 90",
        "  05:42:32  cancelled: the run ended",
    ]:
        assert line in text.splitlines(), (line, text)
    pending = render_approval(approval(), now=NOW, tz=UTC)
    assert "deadline   Nov 22 05:42 (23h 57m left)" in pending
    assert "approve: tako approve r1:manager --by NAME [--value JSON]" in pending
    assert render_decided(approval()) == (
        "r1:manager: approved by alice (1 of 2); waiting for 1 more approval from bob, carol"
    )


def test_dev_lines_for_approvals() -> None:
    fmt = EventFormatter(tz=UTC)
    fmt.line("started", {"run_id": "r1", "workflow": "refund"}, NOW)
    ms = int((NOW + timedelta(hours=1)).timestamp() * 1000)
    parked_line = fmt.line(
        "parked", {"run_id": "r1", "kind": "approval", "key": "manager", "wake_at": ms}, NOW
    )
    assert parked_line == (
        "05:45:00  r1 refund  ⏸ waiting for approval r1:manager"
        " (tako approve r1:manager --by <you>)"
    )
    woke = fmt.line("woke", {"run_id": "r1", "by": "approval r1:manager timed_out"}, NOW)
    assert woke == "05:45:00  r1 refund  ◄ approval r1:manager timed out"
