"""Field rules declared as data, shared by every surface: the public APIs, the admin API, the CLI.

A rule checks one value and returns it normalised (an integral ``5.0`` becomes ``5``), or
raises :class:`InvalidField`: a 400 in OpenAI's error shape naming the field, which is also a
``ValueError`` so the CLI reports it as a usage error. Ranges keep every number inside what
the database columns, the upstream encoders (64-bit integers) and the budget arithmetic hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spaceai.types import GatewayError

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")
_CONTROL = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")


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


@dataclass(frozen=True, slots=True)
class Int:
    """An integer in [lo, hi]; an integral float (``5.0``) is taken as that integer."""

    lo: int | None = None
    hi: int | None = None

    def check(self, name: str, v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise wrong_type(name, "an integer", v)
        if self.lo is not None and v < self.lo:
            raise InvalidField(f"Invalid '{name}': integer below minimum value. Expected a value "
                               f">= {self.lo}, but got {v} instead.", name,
                               "integer_below_min_value")
        if self.hi is not None and v > self.hi:
            raise InvalidField(f"Invalid '{name}': integer above maximum value. Expected a value "
                               f"<= {self.hi}, but got {v} instead.", name,
                               "integer_above_max_value")
        return v

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.lo is not None:
            out["minimum"] = self.lo
        if self.hi is not None:
            out["maximum"] = self.hi
        return out


@dataclass(frozen=True, slots=True)
class Num:
    """A finite number in [lo, hi] (NaN and infinities are refused, whatever the bounds)."""

    lo: float
    hi: float

    def check(self, name: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise wrong_type(name, "a number", v)
        if not (math.isfinite(v) and self.lo <= v <= self.hi):
            raise InvalidField(f"Invalid value for '{name}': {v} is not between {self.lo:g} and "
                               f"{self.hi:g}.", name)
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True, slots=True)
class Bool:
    def check(self, name: str, v: Any) -> bool:
        if not isinstance(v, bool):
            raise wrong_type(name, "a boolean", v)
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Str:
    """A string of at most ``max_len`` characters; ``text`` refuses control characters (NUL...),
    which some databases cannot store."""

    max_len: int | None = None
    text: bool = False
    choices: tuple[str, ...] | None = None

    def check(self, name: str, v: Any) -> str:
        if not isinstance(v, str):
            raise wrong_type(name, "a string", v)
        if self.choices is not None and v not in self.choices:
            raise InvalidField(f"Invalid value for '{name}': {v[:100]!r}. Supported values are: "
                               f"{', '.join(repr(c) for c in self.choices)}.", name)
        if self.max_len is not None and len(v) > self.max_len:
            raise InvalidField(f"Invalid '{name}': string too long. Expected a string with "
                               f"maximum length {self.max_len}, but got a string with length "
                               f"{len(v)} instead.", name, "string_above_max_length")
        if self.text and _CONTROL.search(v):
            raise InvalidField(f"Invalid '{name}': control characters are not allowed.", name)
        return v

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.max_len is not None:
            out["maxLength"] = self.max_len
        if self.text:
            out["pattern"] = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
        return out


@dataclass(frozen=True, slots=True)
class OneOf:
    """A value of any of the given JSON types, unchecked inside (passed through as it is)."""

    types: tuple[type, ...]
    expected: str

    def check(self, name: str, v: Any) -> Any:
        if isinstance(v, bool) and bool not in self.types or not isinstance(v, self.types):
            raise wrong_type(name, self.expected, v)
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": [type_name(t()) for t in self.types]}


Rule = Int | Num | Bool | Str | OneOf


def read(body: Mapping[str, Any], rules: Mapping[str, Rule]) -> dict[str, Any]:
    """Every field of ``rules`` present (and not null) in ``body``, checked and normalised."""
    return {name: rule.check(name, body[name]) for name, rule in rules.items()
            if body.get(name) is not None}


def query_int(query: Mapping[str, str], name: str, rule: Int, default: int) -> int:
    """An integer query-string parameter under ``rule``; ``default`` when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise InvalidField(f"Invalid type for '{name}': expected an integer, but got "
                           f"{raw[:40]!r}.", name, "invalid_type")
    return rule.check(name, int(text))
