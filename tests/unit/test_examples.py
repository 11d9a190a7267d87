"""The payload `tako dev` suggests for a workflow is one its handler's payload type accepts."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pytest

from tako.worker_runtime.examples import payload_example


class Colour(enum.Enum):
    RED = "red"


class Line(msgspec.Struct):
    sku: Annotated[str, msgspec.Meta(min_length=5)]
    quantity: Annotated[int, msgspec.Meta(ge=1)]
    price: decimal.Decimal


class Order(msgspec.Struct):
    order_id: uuid.UUID
    placed_at: datetime.datetime
    ship_on: datetime.date
    lines: Annotated[list[Line], msgspec.Meta(min_length=1)]
    mode: Literal["air", "sea"]
    colour: Colour
    note: str | None
    gift: bool = False


@dataclasses.dataclass
class Signup:
    email: str
    age: Annotated[int, msgspec.Meta(gt=17, lt=130)]
    referrer: str | None = None


class Event(TypedDict):
    kind: str
    at: datetime.datetime


class Cat(msgspec.Struct, tag=True):
    lives: int


class Dog(msgspec.Struct, tag=True):
    good: bool


async def order(payload: Order, step: Any) -> None: ...
async def signup(payload: Signup, step: Any) -> None: ...
async def event(payload: Event, step: Any) -> None: ...
async def numbers(payload: list[int], step: Any) -> None: ...
async def pet(payload: Cat | Dog, step: Any) -> None: ...
async def pair(payload: tuple[str, float], step: Any) -> None: ...


@pytest.mark.parametrize("handler", [order, signup, event, numbers, pet, pair])
def test_the_example_decodes_as_the_handler_payload(handler: Any) -> None:
    example = payload_example(handler)
    assert example is not msgspec.UNSET
    hint = handler.__annotations__["payload"]
    msgspec.json.decode(msgspec.json.encode(example), type=eval(hint))


def test_only_required_fields_are_filled() -> None:
    assert payload_example(signup) == {"email": "...", "age": 18}
    assert set(payload_example(order)) == {
        "order_id", "placed_at", "ship_on", "lines", "mode", "colour", "note",
    }  # fmt: skip


async def untyped(payload, step):  # type: ignore[no-untyped-def]
    return payload


async def anything(payload: Any, step: Any) -> None: ...


def test_no_annotation_means_no_example() -> None:
    assert payload_example(untyped) is msgspec.UNSET
    assert payload_example(anything) is msgspec.UNSET
