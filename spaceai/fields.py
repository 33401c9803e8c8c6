"""Request bodies checked against their declared types, and refused in OpenAI's words.

The types (``spaceai.api.schemas``) are the one declaration of what a body may hold; msgspec
checks a decoded body against them in one pass. What msgspec reports on a refusal is a short
English sentence and a path; :func:`convert` turns it into the 400 OpenAI would answer: a
message naming the field, its ``param`` (``messages[0].role``) and ``code``
(``integer_above_max_value``...), read off the declared constraint and the value sent. That
is also a ``ValueError``, so the CLI reports it as a usage error.

Ranges keep every number inside what the database columns, the upstream encoders (64-bit
integers) and the budget arithmetic hold.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from spaceai.types import GatewayError

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_BUDGET_USD = 1e9  # nano-dollars stay well inside a 64-bit integer column
# printable text: what a database column and a log line can hold
TEXT_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")
_MSGSPEC_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$", re.S)
_FIELD = re.compile(r"field `(?P<name>[^`]*)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")

T = TypeVar("T")


class InvalidField(GatewayError, ValueError):
    """A 400 naming the offending field (``param``)."""

    def __init__(self, message: str, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(400, message, type="invalid_request_error", param=param, code=code)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as OpenAI's messages say it."""
    return {
        bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
        dict: "object", type(None): "null",
    }.get(type(value), type(value).__name__)


def wrong_type(name: str, expected: str, value: Any) -> InvalidField:
    return InvalidField(f"Invalid type for '{name}': expected {expected}, but got "
                        f"{type_name(value)}.", name, "invalid_type")


def convert(value: Any, type_: type[T], *, query: bool = False) -> T:
    """``value`` (a decoded JSON body, or a query string's ``dict`` with ``query``) as
    ``type_``, or the :class:`InvalidField` OpenAI would answer for its first bad field.

    An integral float (``5.0``) is taken where an integer is declared: clients that write
    every number as a float (JavaScript's, some SDKs') send them, and OpenAI takes them.
    msgspec refuses those in strict mode, so on that refusal the float is replaced by its
    integer in ``value`` itself, and ``value`` converted again (a rare path; a normal body is
    converted once). So a body that passes holds the values it is forwarded with.
    """
    while True:
        try:
            return msgspec.convert(value, type_, strict=not query)
        except msgspec.ValidationError as exc:
            error = exc
        found = _refusal(str(error), value, type_, query)
        if isinstance(found, InvalidField):
            raise found from None
        parent, key, number = found
        parent[key] = number


def _refusal(text: str, body: Any, type_: Any,
             query: bool) -> InvalidField | tuple[Any, Any, int]:
    """The OpenAI error for msgspec's refusal ``text`` of ``body``; or, for an integral float
    where an integer is declared, where it is and its integer (to convert again)."""
    m = _MSGSPEC_ERROR.match(text)
    what, path = m["what"], m["path"] or ""
    steps: list[str | int] = [name or int(index)
                              for name, index in _STEP.findall(path)]
    field = _FIELD.search(what)
    if field and what.startswith(("Object missing", "Object contains unknown")):
        param = _param([*steps, field["name"]])
        if what.startswith("Object missing"):
            return InvalidField(f"Missing required parameter: '{param}'.", param,
                                "missing_required_parameter")
        return InvalidField(f"Unrecognized request argument supplied: {param}", param,
                            "unknown_parameter")
    param = _param(steps) or None
    if param is None:
        return InvalidField("The request body must be a JSON object.", None, "invalid_type")
    parent, value = None, body
    for step in steps:
        parent, value = value, value[step]
    kinds = _kinds(_info_at(mi.type_info(type_), steps, body))
    if query and isinstance(value, str) and _INTEGER.fullmatch(value.strip()) and \
            any(isinstance(k, mi.IntType) for k in kinds):
        value = int(value)
    if type(value) is float and value.is_integer() and parent is not None and any(
            isinstance(k, mi.IntType) and _within(k, int(value)) for k in kinds):
        return parent, steps[-1], int(value)
    return _describe(param, value, kinds, what)


def _param(steps: list[str | int]) -> str:
    """A path as OpenAI names a parameter: ``messages[0].content``."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


def _kinds(info: Any) -> list[Any]:
    """The alternatives a declared type allows, without ``null`` and metadata wrappers."""
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        return [k for t in info.types for k in _kinds(t)]
    return [] if isinstance(info, mi.NoneType) else [info]


def _info_at(info: Any, steps: list[str | int], body: Any) -> Any:
    """The declared type at ``steps`` inside ``body``; a tag field's type is the union's tags."""
    value = body
    for step in steps:
        kinds = _kinds(info)
        if isinstance(step, int):
            info = next((k.item_type for k in kinds if isinstance(k, mi.ListType)), mi.AnyType())
        else:
            structs = [k for k in kinds if isinstance(k, mi.StructType)]
            tag = structs[0].tag_field if structs else None
            if step == tag:
                info = mi.LiteralType(tuple(s.tag for s in structs))
            else:
                if tag is not None and isinstance(value, dict):
                    structs = [s for s in structs if s.tag == value.get(tag)] or structs
                info = next((f.type for s in structs for f in s.fields
                             if f.encode_name == step),
                            next((k.value_type for k in kinds if isinstance(k, mi.DictType)),
                                 mi.AnyType()))
        value = value[step]
    return info


def _within(kind: mi.IntType, value: int) -> bool:
    return (kind.ge is None or value >= kind.ge) and (kind.le is None or value <= kind.le)


_EXPECTED = {mi.IntType: "an integer", mi.FloatType: "a number", mi.BoolType: "a boolean",
             mi.StrType: "a string", mi.LiteralType: "a string", mi.ListType: "an array",
             mi.DictType: "an object", mi.StructType: "an object"}
_ACCEPTS: dict[type, tuple[type, ...]] = {
    mi.IntType: (int,), mi.FloatType: (int, float), mi.BoolType: (bool,), mi.StrType: (str,),
    mi.LiteralType: (str,), mi.ListType: (list,), mi.DictType: (dict,), mi.StructType: (dict,)}


def _describe(param: str, value: Any, kinds: list[Any], what: str) -> InvalidField:
    """OpenAI's message for ``value`` refused at ``param`` by the alternatives ``kinds``."""
    name = param
    if type(value) is float and value.is_integer() and any(
            isinstance(k, mi.IntType) for k in kinds):
        value = int(value)  # past the declared range: said as the integer it is
    kind = next((k for k in kinds if isinstance(value, _ACCEPTS.get(type(k), ()))
                 and not (type(value) is bool and not isinstance(k, mi.BoolType))), None)
    if kind is None:
        expected = " or ".join(dict.fromkeys(_EXPECTED.get(type(k), "a value") for k in kinds))
        return wrong_type(name, expected or "a value", value)
    if isinstance(kind, mi.IntType):
        if kind.ge is not None and value < kind.ge:
            return InvalidField(f"Invalid '{name}': integer below minimum value. Expected a "
                                f"value >= {kind.ge}, but got {value} instead.", param,
                                "integer_below_min_value")
        return InvalidField(f"Invalid '{name}': integer above maximum value. Expected a value "
                            f"<= {kind.le}, but got {value} instead.", param,
                            "integer_above_max_value")
    if isinstance(kind, mi.FloatType):
        return InvalidField(f"Invalid value for '{name}': {value} is not between {kind.ge:g} "
                            f"and {kind.le:g}.", param)
    if isinstance(kind, mi.LiteralType):
        return InvalidField(f"Invalid value for '{name}': {str(value)[:100]!r}. Supported values "
                            f"are: {', '.join(repr(v) for v in kind.values)}.", param)
    if isinstance(kind, mi.StrType | mi.ListType):
        noun = "string" if isinstance(kind, mi.StrType) else "array"
        a_noun = f"a {noun}" if noun == "string" else f"an {noun}"
        if kind.min_length is not None and len(value) < kind.min_length:
            if not value:
                return InvalidField(f"Invalid '{name}': empty {noun}. Expected {a_noun} with "
                                    f"minimum length {kind.min_length}, but got an empty {noun} "
                                    "instead.", param, f"empty_{noun}")
            return InvalidField(f"Invalid '{name}': {noun} too short. Expected {a_noun} with "
                                f"minimum length {kind.min_length}, but got {a_noun} with length "
                                f"{len(value)} instead.", param, f"{noun}_below_min_length")
        if kind.max_length is not None and len(value) > kind.max_length:
            return InvalidField(f"Invalid '{name}': {noun} too long. Expected {a_noun} with "
                                f"maximum length {kind.max_length}, but got {a_noun} with length "
                                f"{len(value)} instead.", param, f"{noun}_above_max_length")
        if isinstance(kind, mi.StrType) and kind.pattern == TEXT_PATTERN:
            return InvalidField(f"Invalid '{name}': control characters are not allowed.", param)
        if isinstance(kind, mi.StrType) and kind.pattern:
            return InvalidField(f"Invalid '{name}': string does not match pattern. Expected a "
                                f"string that matches the pattern '{kind.pattern}'.", param)
    return InvalidField(f"Invalid value for '{name}': {what}.", param)
