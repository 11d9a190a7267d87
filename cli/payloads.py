"""Payload arguments as users type them: JSON text, `@path/to/file.json`, or `-` for stdin.

Parsing happens here, before anything is sent, so a typo is exit 2 with the
line and column where the JSON broke (SPEC §7) instead of a round trip to
the supervisor. Python's `json` module is used for the check because its
errors carry line and column; msgspec's carry only a byte offset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any, NoReturn


class PayloadError(ValueError):
    """The payload argument is not valid JSON, or its file cannot be read."""


def _no_constants(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity, which are not JSON: no other client could send them.
    raise PayloadError(f"{name} is not valid JSON (use a string or null)")


def _finite(text: str) -> float:
    # json.loads reads 1e400 as infinity, which JSON has no way to send back.
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"the number {text} is out of range (it must fit a 64-bit float)")
    return value


def parse_json(text: str, *, source: str = "payload") -> Any:
    """Decode JSON text; the error names `source`, the line and the column."""
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise PayloadError(f"invalid JSON in {source} at {where}: {exc.msg}") from None
    except PayloadError as exc:
        raise PayloadError(f"invalid JSON in {source}: {exc}") from None
    except RecursionError:
        raise PayloadError(f"invalid JSON in {source}: nested too deeply") from None


def read_payload(arg: str, stdin: IO[bytes]) -> Any:
    """The value a PAYLOAD argument stands for: `-` reads stdin, `@file` reads the file."""
    if arg == "-":
        return parse_json(_text(stdin.read(), "stdin"), source="stdin")
    if arg.startswith("@"):
        path = Path(arg[1:]).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PayloadError(f"cannot read payload file {path}: {exc.strerror}") from None
        return parse_json(_text(data, str(path)), source=str(path))
    return parse_json(arg)


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")  # tolerate a BOM left by some editors
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{source} is not UTF-8 text (byte {exc.start})") from None
