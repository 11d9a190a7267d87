"""A payload a workflow's handler accepts, for `tako dev` to suggest in `tako run NAME PAYLOAD`.

Built from the handler's first parameter annotation with msgspec's type
introspection (what the payload is decoded with): the required fields with
placeholder values. The result is checked by decoding it as the worker will;
UNSET (left out of the registry) when there is no annotation or no example.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import msgspec
import msgspec.inspect as mi

_PLACEHOLDERS: dict[type[mi.Type], Any] = {
    mi.DateType: "2026-01-01",
    mi.TimeType: "00:00:00",
    mi.TimeDeltaType: "PT0S",
    mi.UUIDType: "00000000-0000-0000-0000-000000000000",
    mi.DecimalType: "0",
    mi.BoolType: False,
    mi.NoneType: None,
    mi.DictType: {},
    mi.FrozenDictType: {},
}


def payload_example(fn: Any) -> Any:
    """An example payload for handler `fn`, or UNSET when there is nothing better than `{}`."""
    params = list(inspect.signature(fn).parameters)
    try:
        hint = typing.get_type_hints(fn).get(params[0]) if params else None
        if hint is None or hint is Any:
            return msgspec.UNSET
        value = _example(mi.type_info(hint), depth=0)
        msgspec.json.decode(msgspec.json.encode(value), type=hint)  # as the worker will
    except Exception:  # a type msgspec cannot handle, or an example it refuses
        return msgspec.UNSET
    return value


def _example(t: mi.Type, depth: int) -> Any:
    if depth > 32:  # a recursive type: stop somewhere
        return None
    depth += 1
    match t:
        case mi.StructType() | mi.DataclassType() | mi.TypedDictType() | mi.NamedTupleType():
            fields = [f for f in t.fields if f.required]
            if isinstance(t, mi.NamedTupleType) or getattr(t, "array_like", False):
                return [_example(f.type, depth) for f in fields]
            out = {f.encode_name: _example(f.type, depth) for f in fields}
            if isinstance(t, mi.StructType) and t.tag_field is not None:
                out = {t.tag_field: t.tag, **out}
            return out
        case mi.ListType() | mi.SetType() | mi.FrozenSetType() | mi.VarTupleType():
            return [_example(t.item_type, depth)] * (t.min_length or 0)
        case mi.TupleType():
            return [_example(item, depth) for item in t.item_types]
        case mi.StrType():
            size = max(3, t.min_length or 0)
            return "." * (size if t.max_length is None else min(size, t.max_length))
        case mi.IntType() | mi.FloatType():
            low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else 0)
            high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else low)
            return min(max(low, 0), high)
        case mi.DateTimeType():
            return "2026-01-01T00:00:00" + ("Z" if t.tz is not False else "")
        case mi.BytesType() | mi.ByteArrayType() | mi.MemoryViewType():
            return ""
        case mi.LiteralType():
            return t.values[0]
        case mi.EnumType():
            return next(iter(t.cls)).value
        case mi.UnionType():
            options = [o for o in t.types if not isinstance(o, mi.NoneType)] or list(t.types)
            return _example(options[0], depth)
        case _:
            return _PLACEHOLDERS.get(type(t))
