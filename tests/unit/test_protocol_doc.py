"""docs/protocol.md against the protocol codec: its examples must be requests takod reads.

The page is the reference for clients in other languages, so its request lines
are checked with the decoder takod itself uses: a line the page shows as
accepted must decode, and a line the page shows answered with a decoding error
(`bad_json`, `unknown_op`, `invalid` from the decoder) must fail with that
code, that id and that message. Each client op must have its section, and
every op the decoder knows must be named on the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tako._protocol import OPS, RequestError, decode_request

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
WORKER_OPS = {"hello", "step", "park", "finish", "keyed", "leaving", "beat"}
DECODER_CODES = {"bad_json", "unknown_op", "invalid"}


def _raw(line: str) -> bytes:
    """The bytes a doc line stands for: `\\xNN` in a line is one raw byte, as the page says."""
    byte = re.compile(r"\\x([0-9a-fA-F]{2})")
    parts = byte.split(line)  # text, hex digits, text, hex digits, ..., text
    return b"".join(bytes([int(p, 16)]) if i % 2 else p.encode() for i, p in enumerate(parts))


def _reply(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "ok" in value else None


def exchanges(text: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Each request line of the page's ```json blocks, with the reply line right after it.

    Console blocks contribute their quoted requests (`'{"id":...}'`), without a reply:
    their replies may come in another order."""
    found: list[tuple[str, dict[str, Any] | None]] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        lines = body.splitlines()
        if lang == "json":
            for i, line in enumerate(lines):
                if _reply(line) is None:
                    nxt = _reply(lines[i + 1]) if i + 1 < len(lines) else None
                    found.append((line, nxt))
        elif lang == "console":
            found += [(m, None) for m in re.findall(r"'(\{\"id\".*?\})'", body)]
    return found


DOC_TEXT = DOC.read_text(encoding="utf-8")
EXCHANGES = exchanges(DOC_TEXT)


def check(line: str, reply: dict[str, Any] | None) -> None:
    """Raise AssertionError when the decoder disagrees with what the page shows."""
    raw = _raw(line)
    try:
        request = decode_request(raw)
    except RequestError as exc:
        assert reply is not None, f"decoder refuses a line shown as valid: {exc}"
        got = {"code": exc.error.code, "message": exc.error.message}
        assert reply["error"] == got and reply["id"] == exc.req_id, f"decoder says {got}"
        return
    if reply is None or reply.get("error", {}).get("code") == "too_large":
        return  # a too_large line is shown shortened: nothing more to compare
    assert reply["id"] == request.id, "a decoded request's reply echoes its id"
    if not reply["ok"]:
        code = reply["error"]["code"]
        assert code != "unknown_op", "the decoder knows this op"
        if code == "bad_json":  # takod's own check of stored JSON values
            with pytest.raises(UnicodeDecodeError):
                raw.decode()


def test_the_page_has_request_examples_for_every_client_op() -> None:
    shown = {m.group(1) for line, _ in EXCHANGES if (m := re.search(r'"op":"(\w+)"', line))}
    assert shown >= OPS - WORKER_OPS


@pytest.mark.parametrize(("line", "reply"), EXCHANGES, ids=[r[:60] for r, _ in EXCHANGES])
def test_request_line_decodes_as_the_page_says(line: str, reply: dict[str, Any] | None) -> None:
    check(line, reply)


def test_the_python_example_calls_client_ops() -> None:
    called = re.findall(r'call\(\d+, "(\w+)"', DOC_TEXT)
    assert called and set(called) <= OPS - WORKER_OPS


def test_every_op_is_named_and_every_client_op_has_its_section() -> None:
    for op in OPS:
        assert f"`{op}`" in DOC_TEXT, op
    for op in OPS - WORKER_OPS:
        assert f"\n### `{op}`\n" in DOC_TEXT, op


def test_the_page_stands_alone() -> None:
    """Users have the page, not the project's internal documents."""
    # the project's internal documents, spelled so that this line does not cite them
    for word in ("SPEC", "STYLE" + ".md", "ARCHITECTURE", "§", "Known defect"):
        assert word not in DOC_TEXT, word


def test_the_checks_catch_a_drifted_line() -> None:
    """A field renamed or mistyped on the page, or a wrong error shown, fails the check."""
    with pytest.raises(AssertionError):
        check('{"id":1,"op":"start","workflow":"fulfill-order","delay":"10m"}', None)
    with pytest.raises(AssertionError):
        check('{"id":1,"op":"get_run","run":"order-42"}', None)
    reply = {"id": 33, "ok": False, "error": {"code": "invalid", "message": "wrong"}}
    with pytest.raises(AssertionError):
        check('{"id":33,"op":"start","workflow":"fulfill-order","delay":"10m"}', reply)
