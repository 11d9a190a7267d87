"""The edit form of an approval request, generated from the JSON Schema of its `type=`.

Pure functions: schema and current value in, fields out; submitted form in,
JSON value out. A top-level object gets one field per property (text,
number, checkbox, or a select for an enum); anything the form cannot say
with a plain field (nested objects, lists, unions) is a JSON text area for
that property. Without a schema, the whole value is one JSON text area.

takod checks the edited value against the same schema and refuses it with
msgspec's message, which names the path (``... - at `$.amount` ``): that
message is shown next to the field it names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

WHOLE = "$"  # the field that holds the whole value as JSON
_AT_PATH = re.compile(r" - at `\$(?:\.([A-Za-z0-9_]+)|\[(?:'|\")?([^\]'\"]+))?")


@dataclass
class Field:
    name: str
    label: str
    kind: str  # "text", "number", "checkbox", "select", "textarea"
    value: str
    required: bool = False
    options: tuple[str, ...] = ()
    error: str | None = None


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (msgspec puts Structs under `$defs`)."""
    seen = 0
    while "$ref" in schema and seen < 20:
        ref = str(schema["$ref"])
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node if isinstance(node, dict) else {}
        seen += 1
    return schema


def _kind(prop: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "select", tuple(prop["enum"])
    match prop.get("type"):
        case "string":
            return "text", ()
        case "integer" | "number":
            return "number", ()
        case "boolean":
            return "checkbox", ()
    return "textarea", ()


def _shown(kind: str, value: Any) -> str:
    if value is None and kind != "textarea":
        return ""
    if kind == "checkbox":
        return "true" if value else ""
    if kind in ("text", "select") and isinstance(value, str):
        return value
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def fields_for(schema: dict[str, Any] | None, value: Any) -> list[Field]:
    """The form's fields, filled with `value`."""
    root = schema or {}
    top = _resolve(root, root)
    props = top.get("properties")
    if top.get("type") != "object" or not isinstance(props, dict) or not isinstance(value, dict):
        return [Field(WHOLE, "Value (JSON)", "textarea", _shown("textarea", value), True)]
    required = set(top.get("required") or ())
    out = []
    for name, raw in props.items():
        prop = _resolve(raw, root) if isinstance(raw, dict) else {}
        kind, options = _kind(prop)
        label = str(prop.get("title") or name)
        out.append(
            Field(name, label, kind, _shown(kind, value.get(name)), name in required, options)
        )
    return out


def value_from_form(fields: list[Field], form: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """The JSON value the submitted form stands for, and per-field errors for what does
    not even parse (a malformed number or JSON text)."""
    errors: dict[str, str] = {}
    if len(fields) == 1 and fields[0].name == WHOLE:
        try:
            return json.loads(form.get(f"field:{WHOLE}", "")), errors
        except ValueError as exc:
            return None, {WHOLE: f"not valid JSON: {exc}"}
    value: dict[str, Any] = {}
    for f in fields:
        submitted = form.get(f"field:{f.name}")
        if f.kind == "checkbox":
            value[f.name] = submitted == "true"
            continue
        if submitted is None or (submitted == "" and not f.required):
            continue
        text = submitted
        if f.kind in ("text", "select"):
            value[f.name] = text
        elif f.kind == "number":
            try:
                number = float(text)
                value[f.name] = int(number) if number.is_integer() and "." not in text else number
            except ValueError:
                errors[f.name] = f"{text!r} is not a number"
        else:
            try:
                value[f.name] = json.loads(text)
            except ValueError as exc:
                errors[f.name] = f"not valid JSON: {exc}"
    return value, errors


def error_field(message: str, fields: list[Field]) -> str:
    """The field a converter message is about (`- at `$.amount``), else the whole form."""
    match = _AT_PATH.search(message)
    names = {f.name for f in fields}
    if match:
        name = match.group(1) or match.group(2)
        if name is not None and name in names:
            return str(name)
    return WHOLE if WHOLE in names else ""


def refill(fields: list[Field], form: dict[str, str], errors: dict[str, str]) -> list[Field]:
    """The fields as the person submitted them, with the errors next to them."""
    for f in fields:
        submitted = form.get(f"field:{f.name}")
        if f.kind == "checkbox":
            f.value = "true" if submitted == "true" else ""
        elif submitted is not None:
            f.value = submitted
        f.error = errors.get(f.name)
    return fields
