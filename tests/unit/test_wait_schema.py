"""A typed wait's schema, checked by takod, accepts exactly what the worker's decode accepts.

For many types T and JSON values v, including plausible-but-wrong strings for every format,
``check(wait_schema(T), v)`` accepts iff ``msgspec.json.decode(v, type=T)`` succeeds: a false
accept wakes a run that then fails on every attempt, a false refusal loses a valid signal.
"""

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Annotated, Any, Literal, NamedTuple, NotRequired, TypedDict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako.takod.schema_check import check
from tako.worker_runtime.wait_schema import wait_schema

UTC = datetime.UTC


class Meeting(msgspec.Struct):
    at: datetime.datetime


class Shipment(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    shipment_id: uuid.UUID
    ship_date: datetime.date
    price: decimal.Decimal
    window: datetime.timedelta | None = None


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Stamp:
    when: Annotated[datetime.datetime, msgspec.Meta(tz=True)]
    blob: bytes = b""


class Record(TypedDict):
    id: uuid.UUID
    seen: NotRequired[datetime.date]


class Span(NamedTuple):
    start: datetime.time
    length: datetime.timedelta = datetime.timedelta(0)


class Pair(msgspec.Struct, array_like=True):
    on: datetime.date
    n: int = 0


class Opened(msgspec.Struct, tag=True):
    at: datetime.datetime


class Closed(msgspec.Struct, tag=True):
    reason: Annotated[str, msgspec.Meta(max_length=5, pattern="^[a-z]+$")]


class Tree(msgspec.Struct):
    day: datetime.date
    kids: "list[Tree]" = []


# --- strings for every format: valid ones, and near misses --------------------------------------

datetimes = st.datetimes(min_value=datetime.datetime(1, 1, 1), timezones=st.none() | st.just(UTC))
zones = st.sampled_from(["", "Z", "z", "+01:00", "-23:59", "+24:00", "+0100", "+01"])
seps = st.sampled_from(["T", "t", " ", "_"])
near_dates = st.sampled_from(
    ["2024-01-01", "2024-13-01", "2024-02-30", "2023-02-29", "2024-2-1", "20240101", "0000-01-01"]
)
near_times = st.sampled_from(
    ["12:00", "12:00:00", "25:00:00", "23:59:60", "12:60:00", "12:00:00.1234567", "1200", "12:00:0"]
)
date_times = st.builds(lambda d, s, t, z: f"{d}{s}{t}{z}", near_dates, seps, near_times, zones)
durations = st.sampled_from(
    ["P1D", "PT1H", "-P1DT2H3M4.5S", "P1W", "P1Y", "PT", "P", "1d", "PT1.5H", "P1DT", "PT-1S"]
)
uuids = st.uuids().map(str) | st.uuids().map(lambda u: u.hex) | st.uuids().map(lambda u: f"{{{u}}}")
decimals = st.decimals(allow_nan=True).map(str) | st.sampled_from(["1e5", " 1", "1,5", "abc", ""])
b64 = st.binary(max_size=7).map(lambda b: base64.b64encode(b).decode())
near_b64 = st.sampled_from(["AA", "AA=A", "A-_=", "AAAA\n", "====", "AA==AA==", "QUJD"])
format_strings = st.one_of(
    datetimes.map(lambda d: d.isoformat()),
    datetimes.map(lambda d: d.isoformat(sep=" ").replace("+00:00", "Z")),
    st.times(timezones=st.none() | st.just(UTC)).map(lambda t: t.isoformat()),
    st.dates().map(str),
    near_dates,
    near_times,
    date_times,
    durations,
    uuids,
    decimals,
    b64,
    near_b64,
    st.sampled_from(["next tuesday", "", "now", "1", "true"]),
)
int_keys = st.integers(-(10**20), 10**20).map(str) | st.sampled_from(["01", "+1", "-0", "1.0", "x"])
float_keys = st.floats().map(str) | st.sampled_from(["1", "1e5", "inf", "nan", "1.", ".5", " 1"])
keys = int_keys | float_keys | format_strings | st.sampled_from(["a", "ab", "abcd", "red", "b"])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    scalars | format_strings,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(keys, kids, max_size=3),
    max_leaves=5,
)


def mostly(valid: Any) -> Any:
    return st.one_of(valid, valid, valid, json_values)


def objects(fields: dict[str, Any]) -> Any:
    """Dicts with some of these keys (and maybe an unknown one) holding mostly-valid values."""
    return st.fixed_dictionaries({}, optional={**fields, "extra": json_values})


def dicts(key: Any) -> Any:
    return st.dictionaries(key, mostly(st.integers(-2, 2)), max_size=3)


texts = format_strings
CASES: list[tuple[Any, Any]] = [
    (Meeting, objects({"at": mostly(texts)})),
    (datetime.datetime, texts),
    (Annotated[datetime.datetime, msgspec.Meta(tz=True)], texts),
    (Annotated[datetime.datetime, msgspec.Meta(tz=False)], texts),
    (datetime.date, texts),
    (datetime.time, texts),
    (Annotated[datetime.time, msgspec.Meta(tz=True)], texts),
    (Annotated[datetime.time, msgspec.Meta(tz=False)], texts),
    (datetime.timedelta, texts),
    (uuid.UUID, texts),
    (decimal.Decimal, texts | scalars),
    (bytes, texts),
    (Annotated[bytearray, msgspec.Meta(min_length=2, max_length=4)], texts),
    (Shipment, objects(dict.fromkeys(["shipmentId", "shipDate", "price", "window"], texts))),
    (Stamp, objects({"when": texts, "blob": texts})),
    (Record, objects({"id": texts, "seen": texts})),
    (Span, st.lists(texts, max_size=3)),
    (Pair, st.lists(texts | st.integers(), max_size=3)),
    (
        Opened | Closed | None,
        objects({"type": st.sampled_from(["Opened", "Closed"]), "at": texts, "reason": texts})
        | st.none(),
    ),
    (Tree, objects({"day": texts, "kids": st.lists(objects({"day": texts}), max_size=2)})),
    (list[datetime.datetime] | None, st.lists(texts, max_size=3) | st.none()),
    (tuple[datetime.date, int], st.tuples(texts, st.integers()).map(list)),
    (frozenset[uuid.UUID], st.lists(texts, max_size=3)),
    (datetime.date | int | None, texts | scalars),
    (Literal["a", "b", 1], st.sampled_from(["a", "b", "c", 1, 2, 1.0, True])),
    (Level, st.sampled_from([1, 2, 3, "1", 1.0])),
    (Color | None, st.sampled_from(["red", "blue", None, 1])),
    (Annotated[str, msgspec.Meta(min_length=1, max_length=3, pattern="^[ab]")], keys),
    (Annotated[int, msgspec.Meta(gt=-5, lt=5, multiple_of=2)], st.integers(-7, 7)),
    (Annotated[str, msgspec.Meta(extra_json_schema={"format": "uuid", "minLength": 9})], texts),
    (dict[int, int], dicts(int_keys)),
    (dict[Annotated[int, msgspec.Meta(ge=0, le=10**18)], int], dicts(int_keys)),
    (dict[float, int], dicts(float_keys)),
    (dict[Annotated[float, msgspec.Meta(gt=0)], int], dicts(float_keys)),
    (dict[Literal[1, 2], int], dicts(int_keys)),
    (dict[Level, int], dicts(int_keys)),
    (dict[Color, int], dicts(keys)),
    (dict[uuid.UUID, int], dicts(keys)),
    (dict[datetime.date, int], dicts(keys)),
    (dict[datetime.datetime, int], dicts(keys)),
    (dict[decimal.Decimal, int], dicts(keys)),
    (dict[bytes, int], dicts(keys)),
    (dict[int | str, int], dicts(keys)),
    (dict[Any, int], dicts(keys)),
    (dict[Level | None, int], dicts(keys)),
    (dict[Annotated[str, msgspec.Meta(pattern="^a", max_length=2)], int], dicts(keys)),
]


def msgspec_accepts(tp: Any, value: object) -> bool:
    try:
        msgspec.json.decode(json.dumps(value).encode(), type=tp)
    except msgspec.ValidationError:
        return False
    return True


@pytest.mark.parametrize(("tp", "near"), CASES, ids=[repr(tp) for tp, _ in CASES])
def test_check_of_wait_schema_agrees_with_msgspec(tp: Any, near: Any) -> None:
    schema = json.loads(json.dumps(wait_schema(tp)))  # as stored by takod

    @settings(max_examples=200, deadline=None, database=None)
    @given(near | json_values)
    def agrees(value: object) -> None:
        error = check(schema, value)
        assert (error is None) == msgspec_accepts(tp, value), (error, schema)

    agrees()


def test_the_reported_payload_is_refused_naming_the_field() -> None:
    schema = wait_schema(Meeting)
    assert check(schema, {"at": "next tuesday"}) == ("Invalid RFC3339 encoded datetime - at `$.at`")
    assert check(schema, {"at": "2024-01-01T25:00:00Z"}) is not None
    assert check(schema, {"at": "2024-05-07T09:00:00+02:00"}) is None


def test_dict_keys_are_read_as_msgspec_reads_them() -> None:
    counts = wait_schema(dict[Annotated[int, msgspec.Meta(ge=0)], str])
    assert check(counts, {"1": "a", "-0": "b"}) is None
    assert check(counts, {"x": "a"}) == "Expected `int`, got `str` - at `key 'x' in $`"
    assert check(counts, {"-1": "a"}) == "Expected `int` >= 0 - at `key '-1' in $`"
    days = wait_schema(dict[datetime.date, str])
    assert (
        check(days, {"2024-02-30": "a"})
        == "Invalid RFC3339 encoded date - at `key '2024-02-30' in $`"
    )


def test_bytes_limits_count_decoded_bytes() -> None:
    schema = wait_schema(Annotated[bytes, msgspec.Meta(min_length=2)])
    assert check(schema, "AAA=") is None  # 2 bytes
    assert check(schema, "AA==") == "Expected `bytes` of length >= 2 - at `$`"
    assert check(schema, "AA") == "Invalid base64 encoded string - at `$`"


def test_types_without_a_json_form_are_refused_when_the_run_parks() -> None:
    with pytest.raises(TypeError):
        wait_schema(complex)


def test_descriptions_are_kept_but_not_extra_checks() -> None:
    note = msgspec.Meta(description="a ref", extra_json_schema={"format": "uuid", "title": "R"})
    assert wait_schema(Annotated[str, note]) == {
        "type": "string",
        "description": "a ref",
        "title": "R",
    }
