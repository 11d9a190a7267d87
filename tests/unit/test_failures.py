"""The worker's error paths on hostile values: describing, formatting and encoding never raise.

A run's failure is described from user data (exception messages holding
undecodable file names, `__str__` methods that raise, results of any shape).
Whatever that data is, the helpers must return valid UTF-8 JSON or refuse
with a clear message: an exception escaping them would kill the worker and
every run in flight with it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tako._errors import TakoError
from tako._protocol import (
    ApprovalSpec,
    Finish,
    Park,
    Request,
    StepDone,
    check_json,
    encode_safely,
    readable_json,
    safe_text,
)
from tako.worker_runtime.failures import Unencodable, describe, encode_value, user_traceback

# any text, lone surrogates included (what os.fsdecode makes of an undecodable file name)
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
text = st.text(st.characters(codec=None, categories=None) | surrogates, max_size=40)
text |= st.sampled_from([os.fsdecode(b"/tmp/\xff.txt"), "\udcff", "\ud800x\udfff", "ok \u2603"])
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | st.integers() | floats | text
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
request = msgspec.json.Decoder(Request)


def valid_json(data: bytes) -> Any:
    """`data` decoded strictly: valid UTF-8 and JSON that msgspec reads back."""
    data.decode("utf-8")
    return msgspec.json.decode(data)


class Hostile(Exception):
    """An exception whose message is arbitrary text, or whose `__str__` raises."""

    def __init__(self, message: str, explode: bool) -> None:
        super().__init__(message)
        self.explode = explode

    def __str__(self) -> str:
        if self.explode:
            raise RuntimeError("no message for you")
        return str(self.args[0])


def raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    """`exc` with a traceback (and a cause), as the worker catches it."""
    try:
        try:
            raise exc from cause
        except BaseException as inner:
            raise inner
    except BaseException as caught:
        return caught


@given(text)
def test_safe_text_is_always_utf8_and_keeps_valid_text(value: str) -> None:
    out = safe_text(value)
    out.encode("utf-8")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        assert out != value
    else:
        assert out == value


@given(text, st.booleans(), text)
def test_describe_and_traceback_of_any_exception_are_utf8(
    message: str, explode: bool, cause: str
) -> None:
    exc = raised(Hostile(message, explode), cause=ValueError(cause))
    for out in (describe(exc), user_traceback(exc)):
        out.encode("utf-8")
        assert "Hostile" in out


@given(st.sampled_from(["step", "workflow"]), text, values)
def test_encode_value_gives_json_that_reads_back_or_a_clear_refusal(
    what: str, name: str, value: Any
) -> None:
    try:
        raw = encode_value(what, name, value, 1 << 20)
    except Unencodable as exc:
        message = str(exc)
        message.encode("utf-8")
        assert message.startswith(f"{what} {name!r} returned"), message
        return
    assert valid_json(raw) == value  # faithful: nothing turned into null on the way


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_not_stored_as_null(value: float) -> None:
    with pytest.raises(Unencodable, match=r"step 'x' returned a list holding NaN or infinity"):
        encode_value("step", "x", [1, {"deep": value}], 1 << 20)


@given(text, text, text, text, values)
def test_any_worker_message_encodes_to_utf8_json(
    key: str, error: str, tb: str, summary: str, result: Any
) -> None:
    raw = msgspec.Raw(msgspec.json.encode(safe_text(repr(result))))
    messages = [
        StepDone(run_id="r", token=1, key=key, name=key or "n", error=error, result=raw),
        Finish(run_id="r", token=1, outcome="failed", error=error, traceback=tb),
        Park(
            run_id="r", token=1, key=key, name=key or "n", kind="approval", error=error,
            approval=ApprovalSpec(summary=summary, approvers=[key, summary]),
        ),
    ]  # fmt: skip
    for msg in messages:
        line = encode_safely(msg)
        valid_json(line)
        assert type(request.decode(line)) is type(msg)


@given(st.binary(max_size=40) | values.map(lambda v: safe_text(repr(v)).encode()))
def test_stored_json_always_goes_out_readable(stored: bytes) -> None:
    valid_json(bytes(readable_json(stored)))


@pytest.mark.parametrize("data", [b"1e400", b'{"a": [-1e999]}', b'"\\udcff"', b'"a\xffb"'])
def test_json_readers_cannot_decode_is_refused_at_the_edge(data: bytes) -> None:
    with pytest.raises(TakoError, match="payload") as caught:
        check_json("payload", data)
    assert caught.value.code in ("invalid", "bad_json")
    assert valid_json(bytes(readable_json(data))) == {
        "unreadable_json": data.decode(errors="replace")
    }
