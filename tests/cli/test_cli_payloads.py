"""Payload arguments: JSON text, @file, stdin; every error says where the JSON broke."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tako.cli.payloads import PayloadError, parse_json, read_payload


def stdin(data: bytes = b"") -> io.BytesIO:
    return io.BytesIO(data)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"order_id": 42}', {"order_id": 42}),
        ("[1, 2.5, null, true]", [1, 2.5, None, True]),
        ('"just a string"', "just a string"),
        ("12345678901234567890", 12345678901234567890),
        ("  null \n", None),
    ],
)
def test_json_text(text: str, value: object) -> None:
    assert read_payload(text, stdin()) == value


def test_a_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes('\ufeff{\n  "name": "Zoë"\n}\n'.encode())  # a BOM, as some editors write
    assert read_payload(f"@{path}", stdin()) == {"name": "Zoë"}
    assert read_payload("-", stdin(b'{"from": "stdin"}')) == {"from": "stdin"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"a": 1,}', "line 1, column 9"),
        ("{'a': 1}", "line 1, column 2"),
        ('{\n  "a": 1\n  "b": 2\n}', "line 3, column 3"),
        ("", "line 1, column 1"),
        ("[1, 2] x", "line 1, column 8"),
    ],
)
def test_invalid_json_names_line_and_column(text: str, where: str) -> None:
    with pytest.raises(PayloadError, match=f"invalid JSON in payload at {where}"):
        parse_json(text)


def test_errors_name_their_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": [1 2]\n}')
    with pytest.raises(PayloadError, match=rf"in {path} at line 2, column 11"):
        read_payload(f"@{path}", stdin())
    with pytest.raises(PayloadError, match="in stdin at line 1, column 1"):
        read_payload("-", stdin(b""))
    with pytest.raises(PayloadError, match=r"cannot read payload file .*missing\.json"):
        read_payload(f"@{tmp_path / 'missing.json'}", stdin())
    with pytest.raises(PayloadError, match="not UTF-8"):
        read_payload("-", stdin(b'"\xff"'))


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"x": -Infinity}'])
def test_non_json_numbers_are_refused(text: str) -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_json(text)


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(PayloadError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)
