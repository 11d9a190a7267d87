"""The socket protocol codec: one request line in, a typed request or an error out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako._errors import BadJson, InvalidRequest, NotAllowed, RunNotFound, UnknownOp
from tako._protocol import (
    OPS,
    ApprovalLinks,
    Approve,
    Beat,
    Cancel,
    CancelApproval,
    CreateToken,
    Finish,
    GetAccess,
    GetApproval,
    GetRun,
    Hello,
    Keyed,
    Leaving,
    ListApprovals,
    ListRuns,
    ListTokens,
    Metrics,
    OpenLink,
    Park,
    Prune,
    Reject,
    RequestError,
    Retry,
    RevokeToken,
    Schedules,
    Signal,
    Start,
    Status,
    StepDone,
    Wait,
    Watch,
    Workflows,
    decode_client_request,
    decode_request,
    decode_worker_request,
    fail,
    ok,
)
from tako._records import iso
from tako._replies import PrunedReply, RevokedReply, decode_reply


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def refused(raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        decode_request(raw)
    return info.value


# -- each op decodes to its Struct ------------------------------------------------------

OP_CASES: list[tuple[dict[str, Any], type]] = [
    ({"op": "start", "workflow": "fulfill-order"}, Start),
    ({"op": "signal", "event": "approval:order-42"}, Signal),
    ({"op": "get_run", "run_id": "r_1"}, GetRun),
    ({"op": "list_runs"}, ListRuns),
    ({"op": "cancel", "run_id": "r_1"}, Cancel),
    ({"op": "retry", "run_id": "r_1"}, Retry),
    ({"op": "status"}, Status),
    ({"op": "workflows"}, Workflows),
    ({"op": "metrics"}, Metrics),
    ({"op": "schedules"}, Schedules),
    ({"op": "keyed", "run_id": "r_1", "token": 3, "key": "ann"}, Keyed),
    ({"op": "wait", "run_id": "r_1"}, Wait),
    ({"op": "hello", "pid": 123}, Hello),
    ({"op": "step", "run_id": "r_1", "token": 2, "key": "a", "name": "a"}, StepDone),
    ({"op": "park", "run_id": "r", "token": 1, "key": "k", "name": "k", "kind": "sleep"}, Park),
    ({"op": "finish", "run_id": "r_1", "token": 1, "outcome": "completed"}, Finish),
    ({"op": "leaving"}, Leaving),
    ({"op": "beat"}, Beat),
    ({"op": "approve", "key": "r:manager", "by": "alice"}, Approve),
    ({"op": "reject", "key": "r:manager", "by": "alice", "reason": "no"}, Reject),
    ({"op": "cancel_approval", "key": "r:manager", "by": "alice"}, CancelApproval),
    ({"op": "list_approvals"}, ListApprovals),
    ({"op": "get_approval", "key": "r:manager"}, GetApproval),
    ({"op": "prune", "older_than": 86400}, Prune),
    ({"op": "create_token", "name": "ci", "scopes": ["read", "start"]}, CreateToken),
    ({"op": "list_tokens"}, ListTokens),
    ({"op": "revoke_token", "name": "ci"}, RevokeToken),
    ({"op": "access", "token": "tako_x"}, GetAccess),
    ({"op": "approval_links", "key": "r:manager"}, ApprovalLinks),
    ({"op": "open_link", "token": "a.b"}, OpenLink),
    ({"op": "watch", "run_id": "r_1", "fingerprint": "ab", "timeout": 5}, Watch),
]


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "create_token", "name": "ci", "scopes": []},
        {"op": "create_token", "name": "ci", "scopes": ["root"]},
        {"op": "create_token", "name": "", "scopes": ["read"]},
    ],
)
def test_a_token_needs_a_name_and_known_scopes(fields: dict[str, Any]) -> None:
    assert refused(line(id=1, **fields)).error.code == "invalid"


def test_decisions_take_the_digest_the_decider_saw() -> None:
    req = decode_request(line(op="approve", key="r:m", by="a", seen="ab12"))
    assert isinstance(req, Approve) and req.seen == "ab12"
    assert decode_request(line(op="reject", key="r:m", by="a", reason="no")).seen is None  # type: ignore[union-attr]


def test_every_op_has_a_case() -> None:
    assert {fields["op"] for fields, _ in OP_CASES} == OPS


@pytest.mark.parametrize(("fields", "cls"), OP_CASES, ids=[f["op"] for f, _ in OP_CASES])
def test_each_op_decodes_to_its_struct(fields: dict[str, Any], cls: type) -> None:
    req = decode_request(line(id=9, **fields))
    assert type(req) is cls
    assert req.id == 9
    for name, value in fields.items():
        if name != "op":
            assert getattr(req, name) == value


def test_request_id_may_be_int_str_or_absent() -> None:
    assert decode_request(line(id="abc", op="status")).id == "abc"
    assert decode_request(line(id=0, op="status")).id == 0
    assert decode_request(line(op="status")).id is None


def test_start_fields_and_defaults() -> None:
    req = decode_request(
        b'{"id":1,"op":"start","workflow":"w","payload":{"a": [1, 2]},'
        b'"run_id":"order-42.v1:x_y","delay":2.5}'
    )
    assert isinstance(req, Start)
    assert bytes(req.payload) == b'{"a": [1, 2]}'  # forwarded as raw JSON, untouched
    assert req.run_id == "order-42.v1:x_y"
    assert req.delay == 2.5
    bare = decode_request(line(op="start", workflow="w"))
    assert isinstance(bare, Start)
    assert bytes(bare.payload) == b"null"
    assert bare.run_id is None
    assert bare.traceparent is None
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = decode_request(line(op="start", workflow="w", traceparent=parent))
    assert isinstance(traced, Start) and traced.traceparent == parent
    with pytest.raises(RequestError, match="traceparent"):
        decode_request(line(op="start", workflow="w", traceparent="00-nope"))
    assert bare.delay is None


def test_signal_fields() -> None:
    req = decode_request(line(op="signal", event="e", payload=[1], run_id="r_1", ttl=60))
    assert isinstance(req, Signal)
    assert bytes(req.payload) == b"[1]"
    assert (req.run_id, req.ttl) == ("r_1", 60)


def test_list_runs_defaults_and_limits() -> None:
    req = decode_request(line(op="list_runs"))
    assert isinstance(req, ListRuns)
    assert (req.status, req.workflow, req.limit) == (None, None, 100)
    assert refused(line(op="list_runs", limit=0)).error.code == "invalid"
    assert refused(line(op="list_runs", limit=10_001)).error.code == "invalid"


def test_unknown_fields_are_ignored() -> None:
    req = decode_request(line(op="status", future_field={"x": 1}))
    assert isinstance(req, Status)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"op": "status"', b'{"op":"status"} trailing', b"\xff\xfe"],
)
def test_invalid_json_is_bad_json_with_null_id(raw: bytes) -> None:
    err = refused(raw)
    assert err.req_id is None
    assert isinstance(err.error, BadJson)
    assert err.error.code == "bad_json"


@pytest.mark.parametrize("req_id", [5, "req-5"])
def test_unknown_op_keeps_the_request_id(req_id: int | str) -> None:
    err = refused(line(id=req_id, op="frobnicate", x=1))
    assert err.req_id == req_id
    assert isinstance(err.error, UnknownOp)
    assert err.error.code == "unknown_op"
    assert "frobnicate" in err.error.message


@pytest.mark.parametrize("req_id", [True, 1.5, [1], {"a": 1}])
def test_an_id_of_the_wrong_type_is_answered_with_null(req_id: object) -> None:
    assert refused(line(id=req_id, op="frobnicate")).req_id is None
    err = refused(line(id=req_id, op="status"))
    assert err.req_id is None
    assert err.error.code == "invalid"
    assert "$.id" in err.error.message


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"op": "start", "workflow": 1}, "$.workflow"),
        ({"op": "start", "workflow": "w", "delay": "soon"}, "$.delay"),
        ({"op": "start", "workflow": "w", "delay": -1}, "$.delay"),
        ({"op": "signal", "event": ["e"]}, "$.event"),
        ({"op": "signal", "event": "e", "ttl": -0.5}, "$.ttl"),
        ({"op": "get_run", "run_id": 12}, "$.run_id"),
        ({"op": "hello", "pid": "x"}, "$.pid"),
        ({"op": "park", "run_id": "r", "token": 1, "key": "k", "name": "k", "kind": "x"}, "$.kind"),
        ({"op": "finish", "run_id": "r", "token": 1, "outcome": "exploded"}, "$.outcome"),
        ({"op": "step", "run_id": "r", "token": "1", "key": "k", "name": "k"}, "$.token"),
    ],
)
def test_mistyped_field_is_invalid_with_msgspec_path(fields: dict[str, Any], path: str) -> None:
    err = refused(line(id=3, **fields))
    assert err.req_id == 3
    assert type(err.error) is InvalidRequest
    assert err.error.code == "invalid"
    assert err.error.message.endswith(f"- at `{path}`")
    assert str(err) == err.error.message


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"op": "start"}, "workflow"),
        ({"op": "signal"}, "event"),
        ({"op": "get_run"}, "run_id"),
        ({"op": "finish", "run_id": "r", "token": 1}, "outcome"),
        ({}, "op"),
    ],
)
def test_missing_field_is_invalid_naming_it(fields: dict[str, Any], missing: str) -> None:
    err = refused(line(id="q", **fields))
    assert err.req_id == "q"
    assert err.error.code == "invalid"
    assert err.error.message == f"Object missing required field `{missing}`"


@pytest.mark.parametrize("raw", [b"[1, 2]", b"42", b'"status"', b"null", b'{"op": 5}'])
def test_json_that_is_not_a_request_object_is_invalid(raw: bytes) -> None:
    err = refused(raw)
    assert err.req_id is None
    assert err.error.code == "invalid"


@pytest.mark.parametrize(
    "run_id",
    ["", "a b", "r/1", "r_1!", "é", "x" * 129, "tab\there"],
)
@pytest.mark.parametrize("op", ["start", "signal"])
def test_run_id_outside_the_allowed_alphabet_is_invalid(op: str, run_id: str) -> None:
    fields = {"workflow": "w"} if op == "start" else {"event": "e"}
    err = refused(line(op=op, run_id=run_id, **fields))
    assert err.error.code == "invalid"
    assert "$.run_id" in err.error.message


@pytest.mark.parametrize("run_id", ["a", "x" * 128, "A-Za-z0-9._:-", "r_018f3a2b4c5d6e7f"])
def test_run_id_in_the_allowed_alphabet_is_accepted(run_id: str) -> None:
    req = decode_request(line(op="start", workflow="w", run_id=run_id))
    assert isinstance(req, Start)
    assert req.run_id == run_id


@pytest.mark.parametrize("run_id", ["abc\n", "x" * 128 + "\n"])
def test_run_id_with_a_trailing_newline_is_invalid(run_id: str) -> None:
    err = refused(line(op="start", workflow="w", run_id=run_id))
    assert err.error.code == "invalid"


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "start", "workflow": "w" * 257},
        {"op": "start", "workflow": ""},
        {"op": "signal", "event": "e" * 257},
        {"op": "signal", "event": ""},
        {"op": "step", "run_id": "r", "token": 1, "key": "k", "name": "n" * 257},
    ],
)
def test_names_must_be_1_to_256_characters(fields: dict[str, Any]) -> None:
    err = refused(line(**fields))
    assert err.error.code == "invalid"
    assert "length" in err.error.message


def test_names_of_exactly_256_characters_are_accepted() -> None:
    assert isinstance(decode_request(line(op="start", workflow="w" * 256)), Start)
    assert isinstance(decode_request(line(op="signal", event="é" * 256)), Signal)


def test_deeply_nested_payload_is_refused_not_raised() -> None:
    depth = 5000
    raw = b'{"id":1,"op":"start","workflow":"w","payload":' + b"[" * depth + b"]" * depth + b"}"
    err = refused(raw)
    assert err.error.code == "invalid"


# -- replies ------------------------------------------------------------------------------


def test_ok_reply_is_one_ndjson_line() -> None:
    reply = ok(7, run_id="r_1", status="pending", deduplicated=False)
    assert reply.endswith(b"\n")
    assert reply.count(b"\n") == 1
    assert json.loads(reply) == {
        "id": 7,
        "ok": True,
        "run_id": "r_1",
        "status": "pending",
        "deduplicated": False,
    }
    assert list(json.loads(reply))[:2] == ["id", "ok"]


def test_ok_reply_keeps_raw_json_and_null_id() -> None:
    reply = ok(None, result=msgspec.Raw(b'{"x": [1, 2]}'))
    assert json.loads(reply) == {"id": None, "ok": True, "result": {"x": [1, 2]}}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadJson("invalid JSON: line\nbreak"), "bad_json"),
        (UnknownOp(), "unknown_op"),
        (InvalidRequest("Expected `str` - at `$.x`"), "invalid"),
        (RunNotFound("no run with id 'r'"), "not_found"),
        (NotAllowed(), "not_allowed"),
    ],
)
def test_fail_reply_is_one_ndjson_line(error: Exception, code: str) -> None:
    reply = fail("abc", error)  # type: ignore[arg-type]
    assert reply.endswith(b"\n")
    assert reply.count(b"\n") == 1  # a newline in the message is escaped
    assert json.loads(reply) == {
        "id": "abc",
        "ok": False,
        "error": {"code": code, "message": error.message},  # type: ignore[attr-defined]
    }


def test_error_reply_for_a_refused_request_round_trips() -> None:
    err = refused(b'{"id": 12, "op": "nope"}')
    assert json.loads(fail(err.req_id, err.error)) == {
        "id": 12,
        "ok": False,
        "error": {"code": "unknown_op", "message": err.error.message},
    }


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_request_error(raw: bytes) -> None:
    try:
        decode_request(raw)
    except RequestError as exc:
        assert exc.error.code in {"bad_json", "invalid", "unknown_op"}
        assert exc.req_id is None or isinstance(exc.req_id, int | str)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)
field_names = st.sampled_from(
    [
        "id",
        "workflow",
        "event",
        "payload",
        "run_id",
        "delay",
        "ttl",
        "token",
        "key",
        "name",
        "kind",
        "outcome",
        "pid",
        "limit",
        "status",
        "wake_at",
        "result",
        "x",
    ]
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    op=st.sampled_from(sorted(OPS)) | st.text(max_size=8) | json_values,
    fields=st.dictionaries(field_names, json_values, max_size=6),
)
def test_arbitrary_request_objects_decode_or_raise_request_error(
    op: object, fields: dict[str, Any]
) -> None:
    raw = json.dumps({"op": op, **fields}).encode()
    try:
        req = decode_request(raw)
    except RequestError as exc:
        assert exc.error.code in {"invalid", "unknown_op"}
        expected_id = fields.get("id")
        if isinstance(expected_id, bool) or not isinstance(expected_id, int | str):
            expected_id = None
        assert exc.req_id == expected_id
        if exc.error.code == "unknown_op":
            assert isinstance(op, str)
            assert op not in OPS
    else:
        assert op in OPS
        assert req.id == fields.get("id")


def test_a_bad_run_id_is_explained_in_words_not_as_a_regex() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(line(id=1, op="start", workflow="w", run_id="order 42"))
    message = info.value.error.message
    assert message == (
        "Expected a run id (1 to 128 of the characters A-Z a-z 0-9 . _ : @ -) - at `$.run_id`"
    )


@pytest.mark.parametrize("run_id", ["a", "nightly-report@2026-11-30T09:00:00Z", "x" * 128])
def test_run_ids_take_at_signs_colons_and_up_to_128_characters(run_id: str) -> None:
    req = decode_request(line(id=1, op="start", workflow="w", run_id=run_id))
    assert isinstance(req, Start) and req.run_id == run_id


@pytest.mark.parametrize("run_id", ["", "x" * 129, "a b", "a\n", "é"])
def test_run_ids_outside_the_rule_are_invalid(run_id: str) -> None:
    with pytest.raises(RequestError):
        decode_request(line(id=1, op="start", workflow="w", run_id=run_id))


@pytest.mark.parametrize(
    ("decode", "line", "message"),
    [
        (decode_client_request, b'{"id": 1, "op": "step"}', "'step' is for worker processes only"),
        (decode_client_request, b'{"id": 1, "op": "beat"}', "'beat' is for worker processes only"),
        (decode_worker_request, b'{"id": 1, "op": "get_run"}', "'get_run' is not a worker op"),
    ],
)
def test_each_peer_is_refused_the_other_peers_ops(
    decode: Callable[[bytes], object], line: bytes, message: str
) -> None:
    with pytest.raises(RequestError) as caught:
        decode(line)
    assert (caught.value.req_id, caught.value.error.code) == (1, "invalid")
    assert caught.value.error.message == f"op {message}"


def test_each_peer_decodes_its_own_ops() -> None:
    assert isinstance(decode_client_request(b'{"op": "get_run", "run_id": "r"}'), GetRun)
    assert isinstance(decode_worker_request(b'{"op": "beat"}'), Beat)
    with pytest.raises(RequestError) as caught:
        decode_client_request(b'{"id": "a", "op": "nope"}')
    assert (caught.value.req_id, caught.value.error.code) == ("a", "unknown_op")


def test_a_reply_decodes_to_its_struct_or_raises_its_typed_error() -> None:
    assert decode_reply(b'{"id": 1, "ok": true, "pruned": 3}', PrunedReply).pruned == 3
    failed = b'{"id": 1, "ok": false, "error": {"code": "not_found", "message": "no run"}}'
    with pytest.raises(RunNotFound, match="no run"):
        decode_reply(failed, PrunedReply)
    with pytest.raises(RunNotFound):  # a failure that happens to fit the shape
        decode_reply(
            b'{"ok": false, "revoked": true, "error": {"code": "not_found"}}', RevokedReply
        )


def test_moments_go_out_as_iso_8601_utc_in_milliseconds() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_800_000_000_007) == "2027-01-15T08:00:00.007Z"
