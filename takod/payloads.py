"""What takod checks of the JSON it is given: size, readability, and a wait's type."""

from __future__ import annotations

import functools
import json
from typing import Any

import msgspec

from tako._errors import PayloadTooLarge
from tako._protocol import check_json
from tako.takod.schema_check import check as check_schema


class Payloads:
    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload

    def check_payload(self, what: str, data: bytes | msgspec.Raw) -> None:
        """A JSON value from a client or a worker: within the size limit, and readable
        back by every reader. msgspec checks only the syntax of a Raw field: not the
        text encoding of its strings, nor that a number fits a float (`1e400`)."""
        self.check_size(what, data)
        check_json(what, data)

    def check_size(self, what: str, data: bytes | msgspec.Raw) -> None:
        limit = self.max_payload
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes of JSON, over the {limit}-byte limit "
                "([runs] max_payload in tako.toml)"
            )

    def check(self, schema: str, payload: bytes) -> str | None:
        """Does `payload` match the JSON Schema `schema` (a typed `wait_for`)? The problem,
        or None. Runs on the writer thread, inside the transaction."""
        return check_schema(_schema(schema), msgspec.json.decode(payload))


@functools.lru_cache(maxsize=256)
def _schema(text: str) -> Any:
    return json.loads(text)
