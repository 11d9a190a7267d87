"""The JSON Schema a typed wait or approval records, complete enough for takod to check exactly.

``msgspec.json.schema`` drops what JSON Schema has no standard word for: a ``datetime`` or
``time`` without ``tz=True`` gets no ``format``, the keys of ``dict[int, ...]`` are not described,
and ``bytes`` limits count base64 characters instead of bytes. takod cannot import the type, so
with that schema it would deliver ``{"at": "next tuesday"}`` to a run that then fails decoding it.
This generator follows msgspec's layout and fills those gaps; ``takod.schema_check`` reads them:

- ``format``: ``date-time``/``time`` (offset required), ``local-date-time``/``partial-time``
  (no offset), ``any-date-time``/``any-time`` (either), ``date``, ``duration``, ``uuid``,
  ``decimal`` (a string, or a number as msgspec also accepts);
- ``contentEncoding: base64`` with ``x-minBytes``/``x-maxBytes``, limits on the decoded bytes;
- ``x-keys``: the schema of dict keys that msgspec reads as numbers (int, float, Decimal keys).
"""

from typing import Any

import msgspec.inspect as mi

__all__ = ["wait_schema"]

_TZ_FORMATS = {
    mi.DateTimeType: {True: "date-time", False: "local-date-time", None: "any-date-time"},
    mi.TimeType: {True: "time", False: "partial-time", None: "any-time"},
}
_FORMATS = {mi.DateType: "date", mi.TimeDeltaType: "duration", mi.UUIDType: "uuid"}
_NAMED = (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType, mi.EnumType)
_BYTES = (mi.BytesType, mi.ByteArrayType, mi.MemoryViewType)
# Only these keywords of extra_json_schema are kept: others would be checked by takod but not by
# msgspec, refusing values the type accepts.
_ANNOTATIONS = {"title", "description", "examples", "default", "deprecated", "$comment"}
_DICTS = (mi.DictType, getattr(mi, "FrozenDictType", mi.DictType))


def wait_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of ``tp``, with named types (Structs, dataclasses, enums...) in ``$defs``."""
    gen = _Generator()
    schema = gen.schema(mi.type_info(tp))
    if gen.defs:
        schema["$defs"] = gen.defs
    return schema


class _Generator:
    def __init__(self) -> None:
        self.names: dict[Any, str] = {}
        self.defs: dict[str, Any] = {}

    def schema(self, t: mi.Type) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        while isinstance(t, mi.Metadata):  # Meta(title=..., extra_json_schema=...) and the like
            notes = (t.extra_json_schema or {}).items()
            extra.update((key, note) for key, note in notes if key in _ANNOTATIONS)
            t = t.type
        if isinstance(t, _NAMED):
            return {**extra, "$ref": f"#/$defs/{self._define(t)}"}
        return {**extra, **self._inline(t)}

    def _define(self, t: Any) -> str:
        if t.cls not in self.names:
            base = getattr(t.cls, "__name__", None) or repr(t.cls)
            name, n = base, 1
            while name in self.defs:
                n += 1
                name = f"{base}_{n}"
            self.names[t.cls] = name
            self.defs[name] = {}  # reserved before recursing, for recursive types
            self.defs[name] = {"title": name, **self._named(t)}
        return self.names[t.cls]

    def _inline(self, t: mi.Type) -> dict[str, Any]:
        if isinstance(t, (mi.AnyType, mi.RawType)):
            return {}
        if isinstance(t, mi.NoneType):
            return {"type": "null"}
        if isinstance(t, mi.BoolType):
            return {"type": "boolean"}
        if isinstance(t, (mi.IntType, mi.FloatType)):
            bounds = {"minimum": t.ge, "exclusiveMinimum": t.gt, "maximum": t.le}
            bounds |= {"exclusiveMaximum": t.lt, "multipleOf": t.multiple_of}
            return _given(type="integer" if isinstance(t, mi.IntType) else "number", **bounds)
        if isinstance(t, mi.StrType):
            lengths = {"minLength": t.min_length, "maxLength": t.max_length}
            return _given(type="string", pattern=t.pattern, **lengths)
        if isinstance(t, _BYTES):
            lengths = {"x-minBytes": t.min_length, "x-maxBytes": t.max_length}
            return _given(type="string", contentEncoding="base64", **lengths)
        if isinstance(t, (mi.DateTimeType, mi.TimeType)):
            return {"type": "string", "format": _TZ_FORMATS[type(t)][t.tz]}
        if isinstance(t, tuple(_FORMATS)):
            return {"type": "string", "format": _FORMATS[type(t)]}
        if isinstance(t, mi.DecimalType):
            return {"type": ["string", "number"], "format": "decimal"}
        if isinstance(t, mi.CollectionType):
            items = None if isinstance(t.item_type, mi.AnyType) else self.schema(t.item_type)
            return _given(type="array", items=items, **_counts("Items", t.min_length, t.max_length))
        if isinstance(t, mi.TupleType):
            prefix = [self.schema(item) for item in t.item_types]
            n = len(prefix)
            return _given(type="array", prefixItems=prefix, items=False, **_counts("Items", n, n))
        if isinstance(t, _DICTS):
            return self._dict(t)
        if isinstance(t, mi.UnionType):
            return self._union(t)
        if isinstance(t, mi.LiteralType):
            return {"enum": list(t.values)}
        raise TypeError(f"a typed wait cannot describe {t!r} as JSON")

    def _dict(self, t: Any) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        keys = self.schema(t.key_type)
        if _is_number(keys, self.defs):
            schema["x-keys"] = keys
        else:
            keys.pop("type", None)  # a key is a string anyway
            if keys:
                schema["propertyNames"] = keys
        if not isinstance(t.value_type, mi.AnyType):
            schema["additionalProperties"] = self.schema(t.value_type)
        return _given(**schema, **_counts("Properties", t.min_length, t.max_length))

    def _union(self, t: mi.UnionType) -> dict[str, Any]:
        """Like msgspec: tagged Structs under one discriminator, None last."""
        tagged: list[Any] = []
        other: list[dict[str, Any]] = []
        none: list[dict[str, Any]] = []
        for member in t.types:
            real = member
            while isinstance(real, mi.Metadata):
                real = real.type
            if isinstance(real, mi.StructType) and not real.array_like:
                tagged.append(real)
            elif isinstance(real, mi.NoneType):
                none.append(self.schema(member))
            else:
                other.append(self.schema(member))
        if len(tagged) >= 2:
            refs = [self.schema(struct) for struct in tagged]
            mapping = {s.tag: ref["$ref"] for s, ref in zip(tagged, refs, strict=True)}
            disc = {"propertyName": tagged[0].tag_field, "mapping": mapping}
            one = {"anyOf": refs, "discriminator": disc}
            return one if not other and not none else {"anyOf": [*other, one, *none]}
        return {"anyOf": [*other, *(self.schema(s) for s in tagged), *none]}

    def _named(self, t: Any) -> dict[str, Any]:
        if isinstance(t, mi.EnumType):
            members = {id(m): m for m in t.cls.__members__.values()}
            return {"enum": [m.value for m in members.values()]}
        names: list[str] = []
        props: list[dict[str, Any]] = []
        required: list[str] = []
        if getattr(t, "tag_field", None) is not None:
            names.append(t.tag_field)
            props.append({"enum": [t.tag]})
            required.append(t.tag_field)
        for field in t.fields:
            names.append(field.encode_name)
            props.append(self.schema(field.type))
            if field.required:
                required.append(field.encode_name)
        closed = getattr(t, "forbid_unknown_fields", False)
        if isinstance(t, mi.NamedTupleType) or getattr(t, "array_like", False):
            defaults = [not f.required for f in t.fields]
            least = len(names) - [*defaults[::-1], False].index(False)  # trailing defaults
            most = len(names) if closed or isinstance(t, mi.NamedTupleType) else None
            return _given(type="array", prefixItems=props, **_counts("Items", least, most))
        schema = {"type": "object", "properties": dict(zip(names, props, strict=True))}
        return _given(**schema, required=required, additionalProperties=False if closed else None)


def _counts(what: str, least: int | None, most: int | None) -> dict[str, int | None]:
    return {"min" + what: least, "max" + what: most}


def _given(**keywords: Any) -> dict[str, Any]:
    """The keywords that have a value: msgspec's None means the type sets no such limit."""
    return {key: value for key, value in keywords.items() if value is not None}


def _is_number(schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    """Whether msgspec reads dict keys of this schema as numbers, not as the key's text."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        return all(_is_number(branch, defs) for branch in schema["anyOf"])
    if schema.get("format") == "decimal":
        return True  # a Decimal key is a JSON number, unlike a Decimal value
    if "enum" in schema:
        return not any(isinstance(v, str) for v in schema["enum"])
    return schema.get("type") in ("integer", "number", "boolean", "null")
