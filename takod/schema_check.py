"""Check decoded JSON against the JSON Schema a typed wait or approval recorded.

Workers describe ``wait_for(type=T)`` payloads with ``worker_runtime.wait_schema`` (msgspec's
layout, plus the formats, base64 limits and dict keys msgspec's own schema leaves out); takod must
reject bad signal payloads itself, without importing user code or depending on ``jsonschema``, so
that a run never wakes with a value its ``msgspec.json.decode(raw, type=T)`` refuses. Messages
follow ``msgspec.ValidationError``, and so do the semantics where the spec differs: ``1.0`` is not
an integer, ``true`` is not a number, ``enum`` tells ``1``, ``1.0`` and ``true`` apart, and
``uniqueItems`` (sets) is ignored because msgspec deduplicates instead of rejecting. Formats,
base64 and numeric dict keys are checked by msgspec itself, decoding the string to the type the
format names, so takod and the worker read them alike; unknown formats are ignored.
"""

import datetime
import decimal
import json
import operator
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

__all__ = ["check"]

# JSON Schema type -> msgspec's name for it, which _kind() also uses (null/array/object as is).
_TYPE_NAMES = {"boolean": "bool", "integer": "int", "number": "float", "string": "str"}
_KINDS = ((type(None), "null"), (bool, "bool"), (int, "int"), (float, "float"), (str, "str"))
_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_LENGTHS = {"str": "Length", "array": "Items", "object": "Properties"}  # minLength, ...
_Root = Mapping[str, Any]
_FORMATS: dict[str, Any] = {
    "date-time": Annotated[datetime.datetime, msgspec.Meta(tz=True)],
    "local-date-time": Annotated[datetime.datetime, msgspec.Meta(tz=False)],
    "any-date-time": datetime.datetime,
    "time": Annotated[datetime.time, msgspec.Meta(tz=True)],
    "partial-time": Annotated[datetime.time, msgspec.Meta(tz=False)],
    "any-time": datetime.time,
    "date": datetime.date,
    "duration": datetime.timedelta,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
}


def check(schema: Mapping[str, Any], value: object) -> str | None:
    """Return None when ``value`` (decoded JSON) matches ``schema``, else a message with the path.

    For example ``"Expected `str`, got `int` - at `$.kind`"``. A ``$ref`` must be a JSON pointer
    into ``schema`` (like ``#/$defs/Name``): others raise ValueError, missing targets KeyError.
    """
    return _check(schema, schema, value, "$")


def _check(root: _Root, schema: Any, value: Any, path: str) -> str | None:
    if isinstance(schema, bool):
        return None if schema else _at(f"Expected nothing, got `{_kind(value)}`", path)
    if "$ref" in schema and (err := _check(root, _deref(root, schema), value, path)):
        return err
    if "type" in schema and (err := _type_error(schema["type"], value)):
        return _at(err, path)
    options = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if options is not None and _canon(value) not in map(_canon, options):
        return _at(_not_one_of(options, value), path)
    for key in ("anyOf", "oneOf"):  # oneOf is treated as anyOf
        if key in schema and (err := _any_of(root, schema, schema[key], value, path)):
            return err
    for sub in schema.get("allOf", ()):
        if err := _check(root, sub, value, path):
            return err
    if err := _limits(schema, value, path):
        return err
    if isinstance(value, dict):
        return _object(root, schema, value, path)
    if isinstance(value, list):
        return _array(root, schema, value, path)
    if isinstance(value, str):
        return _string(schema, value, path)
    return None


def _string(schema: Any, value: str, path: str) -> str | None:
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return _at(f"Expected `str` matching regex {schema['pattern']!r}", path)
    if schema.get("contentEncoding") == "base64":
        limits = msgspec.Meta(
            min_length=schema.get("x-minBytes"), max_length=schema.get("x-maxBytes")
        )
        return _convert(Annotated[bytes, limits], value, path)
    if schema.get("format") in _FORMATS:
        return _convert(_FORMATS[schema["format"]], value, path)
    return None


def _convert(tp: Any, value: object, path: str) -> str | None:
    """msgspec's own verdict on ``value`` as ``tp``, the way the worker will decode it."""
    try:
        msgspec.json.decode(msgspec.json.encode(value), type=tp)
    except msgspec.ValidationError as exc:
        return _at(str(exc), path)
    return None


def _any_of(root: _Root, schema: Any, branches: Any, value: Any, path: str) -> str | None:
    if "discriminator" in schema and isinstance(value, dict):
        return _tagged(root, schema["discriminator"], branches, value, path)
    errors: list[str] = []
    names: list[str] = []
    for branch in branches:
        if (err := _check(root, branch, value, path)) is None:
            return None
        types = _types(root, branch)
        if types is None or not _type_error(types, value):
            errors.append(err)  # the value has this branch's type: say what is wrong inside it
        names.extend(types or ())
    return errors[0] if errors else _at(_type_error(names, value) or "", path)


def _tagged(root: _Root, disc: Any, branches: Any, value: dict[Any, Any], path: str) -> str | None:
    """Pick the tagged-union branch whose tag property accepts the tag, as msgspec does."""
    prop = disc["propertyName"]
    if prop not in value:
        return _at(f"Object missing required field `{prop}`", path)
    mapping = disc.get("mapping")
    tags: list[object] = []
    for branch in [{"$ref": ref} for ref in mapping.values()] if mapping else branches:
        tag_schema = _deref(root, branch).get("properties", {}).get(prop, True)
        if _check(root, tag_schema, value[prop], path) is None:
            return _check(root, branch, value, path)
        if isinstance(tag_schema, Mapping):
            tags.extend(tag_schema.get("enum", [tag_schema.get("const")]))
    return _at(_not_one_of(tags, value[prop]), _join(path, prop))


def _object(root: _Root, schema: Any, value: dict[Any, Any], path: str) -> str | None:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key not in props and extra is False:
            return _at(f"Object contains unknown field `{key}`", path)
        if err := _key(root, schema, key, path):
            return err
        if err := _check(root, props.get(key, extra), item, _join(path, key)):
            return err
    missing = [key for key in schema.get("required", ()) if key not in value]
    return _at(f"Object missing required field `{missing[0]}`", path) if missing else None


def _key(root: _Root, schema: Any, key: str, path: str) -> str | None:
    """Check a key by ``propertyNames``, or as the number msgspec reads from it by ``x-keys``."""
    if "propertyNames" in schema:
        err = _check(root, schema["propertyNames"], key, path)
    elif "x-keys" in schema:
        keys = _deref(root, schema["x-keys"])
        names = {_TYPE_NAMES.get(name, name) for name in _types(root, keys) or ()}
        number: type = float if "float" in names else int
        number = decimal.Decimal if keys.get("format") == "decimal" else number
        try:
            as_key = dict[number, int]  # type: ignore[valid-type]
            parsed = msgspec.json.decode(b"{%s:0}" % msgspec.json.encode(key), type=as_key)
        except msgspec.ValidationError:
            return _at(f"Expected `{number.__name__}`, got `str`", f"key {key!r} in {path}")
        err = None if number is decimal.Decimal else _check(root, keys, next(iter(parsed)), path)
    else:
        return None
    return err and err.replace(f" - at `{path}`", f" - at `key {key!r} in {path}`")


def _array(root: _Root, schema: Any, value: list[Any], path: str) -> str | None:
    prefix = schema.get("prefixItems", [])
    items = schema.get("items", True)
    if items is False and len(value) > len(prefix):
        return _at(f"Expected `array` of length <= {len(prefix)}", path)
    for i, item in enumerate(value):
        if err := _check(root, prefix[i] if i < len(prefix) else items, item, f"{path}[{i}]"):
            return err
    return None


def _limits(schema: Any, value: Any, path: str) -> str | None:
    """Length limits of strings, arrays and objects; bounds and multipleOf of numbers."""
    kind = _kind(value)
    if kind in _LENGTHS:
        lo, hi = (schema.get(bound + _LENGTHS[kind]) for bound in ("min", "max"))
        if lo is not None and lo == hi and len(value) != lo:
            return _at(f"Expected `{kind}` of length {lo}", path)
        if lo is not None and len(value) < lo:
            return _at(f"Expected `{kind}` of length >= {lo}", path)
        if hi is not None and len(value) > hi:
            return _at(f"Expected `{kind}` of length <= {hi}", path)
    if kind not in ("int", "float"):
        return None
    for key, symbol in _BOUNDS.items():
        if key in schema and not _OPS[symbol](value, schema[key]):
            return _at(f"Expected `{kind}` {symbol} {schema[key]}", path)
    step = schema.get("multipleOf")
    try:
        ok = step is None or value % step == 0  # for floats this agrees with msgspec's fmod rule
    except OverflowError:  # an int too large for a float, which msgspec rejects anyway
        ok = False
    return None if ok else _at(f"Expected `{kind}` that's a multiple of {step}", path)


def _types(root: _Root, schema: Any) -> list[str] | None:
    """The type names a schema can accept, or None when it does not say."""
    schema = _deref(root, schema)
    if isinstance(schema, bool):
        return None if schema else []
    if "type" in schema:
        return [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
    if "enum" in schema or "const" in schema:
        return [_kind(v) for v in schema.get("enum", [schema.get("const")])]
    found = [_types(root, branch) for branch in schema.get("anyOf", schema.get("oneOf", [True]))]
    return None if None in found else [name for names in found for name in names or ()]


def _deref(root: _Root, schema: Any) -> Any:
    while isinstance(schema, Mapping) and "$ref" in schema:
        ref, schema = schema["$ref"], root
        if not ref.startswith("#"):
            raise ValueError(f"Unsupported $ref {ref!r}: only refs into the schema itself")
        for part in ref[1:].split("/")[1:]:
            schema = schema[part.replace("~1", "/").replace("~0", "~")]
    return schema


def _kind(value: object) -> str:
    kinds = (*_KINDS, (list, "array"), (dict, "object"))
    return next((name for cls, name in kinds if isinstance(value, cls)), type(value).__name__)


def _type_error(types: str | Sequence[str], value: object) -> str | None:
    """Why ``value`` has none of ``types`` (JSON Schema or msgspec type names), if it has not."""
    names = [_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    kind = _kind(value)
    if kind in names or (kind == "int" and "float" in names):
        return None
    return f"Expected `{' | '.join(dict.fromkeys(names))}`, got `{kind}`"


def _canon(value: object) -> str:
    """JSON text, to compare values the way msgspec does (``1``, ``1.0`` and ``true`` differ)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _not_one_of(options: Sequence[object], value: object) -> str:
    if err := _type_error([_kind(option) for option in options], value):
        return err
    shown = [repr(v) if isinstance(v, str) else _canon(v) for v in [*options, value]]
    one_of = "one of " if len(options) > 1 else ""
    return f"Expected {one_of}{', '.join(shown[:-1])}, got {shown[-1]}"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{key!r}]"


def _at(message: str, path: str) -> str:
    return f"{message} - at `{path}`"
