import dataclasses
import enum
import json
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako.takod.schema_check import check
from tako.worker_runtime.wait_schema import wait_schema

# --- hand-written cases, one or more per keyword ---------------------------------------------


def test_empty_and_boolean_schemas() -> None:
    assert check({}, {"anything": [1, None]}) is None
    assert check({"items": True}, [1, "x"]) is None
    assert check({"properties": {"a": False}}, {"a": 1}) == "Expected nothing, got `int` - at `$.a`"


def test_type_names_and_json_number_rules() -> None:
    assert check({"type": "string"}, 1) == "Expected `str`, got `int` - at `$`"
    assert check({"type": "integer"}, 1) is None
    assert check({"type": "integer"}, 1.0) == "Expected `int`, got `float` - at `$`"
    assert check({"type": "integer"}, True) == "Expected `int`, got `bool` - at `$`"
    assert check({"type": "number"}, 1) is None
    assert check({"type": "number"}, 1.5) is None
    assert check({"type": "number"}, False) == "Expected `float`, got `bool` - at `$`"
    assert check({"type": "boolean"}, 0) == "Expected `bool`, got `int` - at `$`"
    assert check({"type": "null"}, None) is None
    assert check({"type": "object"}, []) == "Expected `object`, got `array` - at `$`"
    assert check({"type": "array"}, {}) == "Expected `array`, got `object` - at `$`"
    assert check({"type": ["integer", "null"]}, "x") == "Expected `int | null`, got `str` - at `$`"
    assert check({"type": ["integer", "null"]}, None) is None


def test_enum_and_const() -> None:
    kind = {"enum": ["approved", "rejected"]}
    assert check(kind, "approved") is None
    assert check(kind, "maybe") == "Expected one of 'approved', 'rejected', got 'maybe' - at `$`"
    assert check(kind, 1) == "Expected `str`, got `int` - at `$`"
    # like msgspec (and unlike Python's ==), 1, 1.0 and true are different values
    assert check({"enum": [1, 2]}, 1) is None
    assert check({"enum": [1, 2]}, True) == "Expected `int`, got `bool` - at `$`"
    assert check({"enum": [1, 2]}, 1.0) == "Expected `int`, got `float` - at `$`"
    assert check({"enum": [1, "a", None]}, None) is None
    assert check({"const": "x"}, "y") == "Expected 'x', got 'y' - at `$`"
    assert check({"const": [1, {"a": None}]}, [1, {"a": None}]) is None
    assert check({"const": [1, {"a": None}]}, [1, {"a": False}]) is not None


def test_ref_resolves_against_root_defs() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
                "required": ["kids"],
            }
        },
    }
    assert check(schema, {"kids": [{"kids": []}]}) is None
    assert check(schema, {"kids": [{"kid": []}]}) == (
        "Object missing required field `kids` - at `$.kids[0]`"
    )
    with pytest.raises(ValueError, match="Unsupported"):
        check({"$ref": "other.json#/x"}, 1)
    with pytest.raises(KeyError):
        check({"$ref": "#/$defs/Missing"}, 1)


def test_any_of_and_one_of() -> None:
    optional = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert check(optional, None) is None
    assert check(optional, 3) is None
    assert check(optional, "x") == "Expected `int | null`, got `str` - at `$`"
    assert check({"oneOf": optional["anyOf"]}, "x") == "Expected `int | null`, got `str` - at `$`"
    # when the value has a branch's type, the error says what is wrong inside that branch
    bounded = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
    assert check(bounded, -1) == "Expected `int` >= 0 - at `$`"


def test_all_of() -> None:
    schema = {"allOf": [{"type": "integer"}, {"minimum": 3}]}
    assert check(schema, 3) is None
    assert check(schema, 2) == "Expected `int` >= 3 - at `$`"
    assert check(schema, "3") == "Expected `int`, got `str` - at `$`"


def test_discriminator_picks_the_tagged_branch() -> None:
    schema = msgspec.json.schema(Approve | Reject)
    assert schema["discriminator"]["propertyName"] == "type"
    assert check(schema, {"type": "Approve", "by": "ann"}) is None
    assert check(schema, {"type": "Reject", "by": "ann"}) == (
        "Object missing required field `reason` - at `$`"
    )
    assert check(schema, {"type": "Approve", "by": 1}) == "Expected `str`, got `int` - at `$.by`"
    assert check(schema, {"type": "Maybe"}) == (
        "Expected one of 'Approve', 'Reject', got 'Maybe' - at `$.type`"
    )
    assert check(schema, {"type": 1}) == "Expected `str`, got `int` - at `$.type`"
    assert check(schema, {"by": "ann"}) == "Object missing required field `type` - at `$`"
    assert check(schema, 3) == "Expected `object`, got `int` - at `$`"
    # a discriminator without mapping falls back to the anyOf branches
    del schema["discriminator"]["mapping"]
    assert check(schema, {"type": "Reject", "reason": "no"}) is None


def test_properties_required_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["kind"],
    }
    assert check(schema, {"kind": "a", "other": [1]}) is None
    assert check(schema, {"n": 1}) == "Object missing required field `kind` - at `$`"
    assert check(schema, {"kind": 1}) == "Expected `str`, got `int` - at `$.kind`"
    closed = {**schema, "additionalProperties": False}
    assert check(closed, {"kind": "a", "x": 1}) == "Object contains unknown field `x` - at `$`"
    values = {"type": "object", "additionalProperties": {"type": "number"}}
    assert check(values, {"a": 1, "b": 2.5}) is None
    assert check(values, {"a b": "x"}) == "Expected `float`, got `str` - at `$['a b']`"


def test_min_and_max_properties() -> None:
    schema = {"type": "object", "minProperties": 1, "maxProperties": 2}
    assert check(schema, {"a": 1}) is None
    assert check(schema, {}) == "Expected `object` of length >= 1 - at `$`"
    assert check(schema, dict.fromkeys("abc")) == "Expected `object` of length <= 2 - at `$`"


def test_items_prefix_items_and_lengths() -> None:
    assert check({"type": "array", "items": {"type": "integer"}}, [1, "x"]) == (
        "Expected `int`, got `str` - at `$[1]`"
    )
    pair = msgspec.json.schema(tuple[int, str])
    assert check(pair, [1, "a"]) is None
    assert check(pair, [1, 2]) == "Expected `str`, got `int` - at `$[1]`"
    assert check(pair, [1, "a", 3]) == "Expected `array` of length 2 - at `$`"
    open_ended = {"prefixItems": [{"type": "integer"}], "items": False}
    assert check(open_ended, [1, 2]) == "Expected `array` of length <= 1 - at `$`"
    assert check({"prefixItems": [{"type": "integer"}]}, [1, "extra"]) is None
    bounded = {"type": "array", "minItems": 1, "maxItems": 2}
    assert check(bounded, []) == "Expected `array` of length >= 1 - at `$`"
    assert check(bounded, [1, 2, 3]) == "Expected `array` of length <= 2 - at `$`"


def test_string_lengths_and_pattern() -> None:
    schema = {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^a"}
    assert check(schema, "ab") is None
    assert check(schema, "a") == "Expected `str` of length >= 2 - at `$`"
    assert check(schema, "abcd") == "Expected `str` of length <= 3 - at `$`"
    assert check(schema, "ba") == "Expected `str` matching regex '^a' - at `$`"
    assert check({"pattern": "b"}, "abc") is None  # re.search, not re.match
    assert check({"minLength": 5}, 1) is None  # string keywords only apply to strings


def test_numeric_bounds_and_multiple_of() -> None:
    assert check({"type": "integer", "minimum": 0, "maximum": 10}, 10) is None
    assert check({"minimum": 0}, -1) == "Expected `int` >= 0 - at `$`"
    assert check({"maximum": 10}, 10.5) == "Expected `float` <= 10 - at `$`"
    assert check({"exclusiveMinimum": 0}, 0) == "Expected `int` > 0 - at `$`"
    assert check({"exclusiveMaximum": 0}, 0.0) == "Expected `float` < 0 - at `$`"
    assert check({"multipleOf": 2}, 7) == "Expected `int` that's a multiple of 2 - at `$`"
    assert check({"multipleOf": 0.5}, 1.5) is None
    assert check({"multipleOf": 0.1}, 0.3) is not None  # msgspec agrees: fmod(0.3, 0.1) != 0
    assert check({"multipleOf": 0.5}, 10**400) is not None  # too large for a float
    assert check({"minimum": 5}, True) is None  # numeric keywords do not apply to booleans


def test_ignored_keywords() -> None:
    schema = {
        "title": "T",
        "description": "d",
        "default": 1,
        "format": "email",  # unknown formats are ignored, known ones only apply to strings
        "examples": [1],
        "uniqueItems": True,
        "x-unknown": 1,
    }
    assert check(schema, [1, 1]) is None


def test_formats_base64_and_keys_are_read_by_msgspec() -> None:
    assert check({"format": "date-time"}, "2024-05-07T09:00:00Z") is None
    assert check({"format": "date-time"}, "2024-05-07T09:00:00") == (
        "Expected `datetime` with a timezone component - at `$`"
    )
    assert check({"format": "any-date-time"}, "2024-05-07T09:00:00") is None
    assert check({"format": "local-date-time"}, "2024-05-07T09:00:00Z") is not None
    assert check({"format": "date"}, "2024-02-30") == "Invalid RFC3339 encoded date - at `$`"
    assert check({"format": "partial-time"}, "09:00:00") is None
    assert check({"format": "duration"}, "P1W") is not None  # msgspec takes D, H, M, S only
    assert check({"format": "uuid"}, "{12345678-1234-5678-1234-567812345678}") is not None
    assert check({"format": "decimal"}, "1.5e3") is None
    assert check({"format": "date"}, 20240101) is None  # formats only apply to strings
    b64 = {"contentEncoding": "base64", "x-maxBytes": 1}
    assert check(b64, "AA==") is None
    assert check(b64, "AAA=") == "Expected `bytes` of length <= 1 - at `$`"
    assert check(b64, "AA") == "Invalid base64 encoded string - at `$`"
    names = {"propertyNames": {"enum": ["a", "b"]}}
    assert check(names, {"a": 1}) is None
    assert check(names, {"c": 1}) == "Expected one of 'a', 'b', got 'c' - at `key 'c' in $`"
    ints = {"x-keys": {"type": "integer", "maximum": 9}}
    assert check(ints, {"9": 0, "-0": 1}) is None
    assert check(ints, {"09": 0}) == "Expected `int`, got `str` - at `key '09' in $`"
    nested = {"properties": {"a": ints}}
    assert check(nested, {"a": {"10": 0}}) == "Expected `int` <= 9 - at `key '10' in $.a`"
    assert check({"x-keys": {"type": "number"}}, {"1e3": 0, "nan": 1}) is None
    assert check({"x-keys": {"format": "decimal"}}, {"1.50": 0}) is None
    assert check({"x-keys": {"format": "decimal"}}, {" 1": 0}) is not None


def test_msgspec_messages_for_structs() -> None:
    schema = msgspec.json.schema(Decision)
    assert check(schema, {"kind": "approved"}) is None
    assert check(schema, {"kind": 1}) == "Expected `str`, got `int` - at `$.kind`"
    assert check(schema, {"kind": "maybe"}) == (
        "Expected one of 'approved', 'rejected', got 'maybe' - at `$.kind`"
    )
    assert check(schema, {}) == "Object missing required field `kind` - at `$`"
    nested = msgspec.json.schema(Review)
    bad = {"decision": {"kind": "approved"}, "items": [{"x": 1}, {"x": 1, "y": 2}]}
    assert check(nested, bad) == "Expected `str | null`, got `int` - at `$.items[1].y`"


# --- property test: check() agrees with msgspec's JSON decoding ---------------------------------


class Decision(msgspec.Struct):
    kind: Literal["approved", "rejected"]


class Item(msgspec.Struct):
    x: int
    y: str | None = None
    z: float = 1.0


class Review(msgspec.Struct):
    decision: Decision
    items: list[Item]


class Approve(msgspec.Struct, tag=True):
    by: str


class Reject(msgspec.Struct, tag=True):
    reason: str


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Point:
    x: int
    label: str = ""


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=5,
)


def mostly(valid: Any) -> Any:
    """Values drawn from ``valid`` three times in four, otherwise any JSON value."""
    return st.one_of(valid, valid, valid, json_values)


def objects(required: dict[str, Any], optional: dict[str, Any]) -> Any:
    """Dicts with the right keys (and maybe an unknown one) holding mostly-valid values."""
    fields = {key: mostly(value) for key, value in required.items()}
    extras = {key: mostly(value) for key, value in optional.items()}
    return st.fixed_dictionaries(fields, optional={**extras, "extra": json_values})


ints = st.integers()
strs = st.text(max_size=4)
floats = st.floats(allow_nan=False, allow_infinity=False) | st.integers()
decisions = objects({"kind": st.sampled_from(["approved", "rejected", "maybe"])}, {})
items = objects({"x": ints}, {"y": st.none() | strs, "z": floats})
tags = st.sampled_from(["Approve", "Reject", "Other"])

CASES: list[tuple[Any, Any]] = [
    (Decision, decisions),
    (Item, items),
    (Review, objects({"decision": decisions, "items": st.lists(items, max_size=3)}, {})),
    (Approve | Reject, objects({"type": tags, "by": strs, "reason": strs}, {})),
    (list[int], st.lists(mostly(ints), max_size=4)),
    (dict[str, float], st.dictionaries(st.text(max_size=3), mostly(floats), max_size=4)),
    (tuple[int, str], st.tuples(mostly(ints), mostly(strs)).map(list) | st.lists(ints | strs)),
    (int | None, ints | st.none()),
    (Color, st.sampled_from(["red", "green", "blue"])),
    (Literal[1, 2, "x", None], st.sampled_from([1, 2, 3, 1.0, True, "x", "y", None])),
    (Annotated[int, msgspec.Meta(ge=0, le=10)], st.integers(-3, 13)),
    (Annotated[str, msgspec.Meta(min_length=2)], strs),
    (
        Annotated[float, msgspec.Meta(gt=0, multiple_of=0.25)],
        st.integers(-8, 8).map(lambda i: i / 8),
    ),
    (Point, objects({"x": ints}, {"label": strs})),
    (Movie, objects({"title": strs}, {"year": ints})),
]


def msgspec_accepts(tp: Any, value: object) -> bool:
    # Round-trip through JSON text: takod receives JSON, so JSON decoding is the reference.
    try:
        msgspec.json.decode(json.dumps(value).encode(), type=tp)
    except msgspec.ValidationError:
        return False
    return True


@pytest.mark.parametrize("describe", [wait_schema, msgspec.json.schema])
@pytest.mark.parametrize(("tp", "near"), CASES, ids=[repr(tp) for tp, _ in CASES])
def test_check_agrees_with_msgspec(tp: Any, near: Any, describe: Any) -> None:
    """Both the schemas workers send and msgspec's own (recorded by older workers) check alike."""
    schema = describe(tp)

    @settings(max_examples=150, deadline=None, database=None)
    @given(near | json_values)
    def agrees(value: object) -> None:
        error = check(schema, value)
        assert (error is None) == msgspec_accepts(tp, value), error
        assert error is None or " - at `$" in error

    agrees()
