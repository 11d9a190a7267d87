"""Log lines as JSON, for `tako serve --log-format json` and its workers.

One object per line, so a log shipper (journald, Docker, Loki, CloudWatch)
needs no parser of its own: `time` (ISO 8601 UTC, ms), `level`, `logger`,
`message`, the run and step when the record has them, and `error` with the
traceback when it carries an exception. A supervisor that logs JSON sets
`TAKO_LOG_FORMAT=json` in its environment, which its workers inherit.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

from tako._records import iso

ENV = "TAKO_LOG_FORMAT"
_encoder = msgspec.json.Encoder(enc_hook=str)  # anything odd in a field prints as its str()


def wants_json() -> bool:
    return os.environ.get(ENV, "text") == "json"


def now_iso() -> str:
    return _iso_s(time.time())


def _iso_s(seconds: float) -> str:
    return iso(int(seconds * 1000)) or ""


def json_line(fields: dict[str, Any]) -> str:
    """One JSON object as one line of text (valid UTF-8 whatever the fields hold)."""
    return _encoder.encode(fields).decode("utf-8", "backslashreplace")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": _iso_s(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("run_id", "step"):
            value = getattr(record, key, None)
            if value not in (None, "-"):
                fields[key] = value
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return json_line(fields)
