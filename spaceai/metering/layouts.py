"""Ledger rows as the spool holds them: versioned layouts, one encoder and one decoder.

A spool line is a JSON array: the layout's version, the row's values in that layout's field
order, then, when the request held a budget reservation, its admission id and budget period.
Rows of the first layout carry no version: they start with the request id (a string), which
is how :func:`decode` tells them apart. A gateway killed before an upgrade leaves segments
that the upgraded gateway replays at start-up, so every layout ever written stays readable
here; a new column means a new entry in :data:`LAYOUTS`, never a change to an old one. The
writer process, the start-up replay and the Redis budget recovery all read rows through
:func:`decode`, so none of them depends on where a value sits in a line.

Imports nothing heavy: the writer process uses it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

# every layout's fields, in the order its lines hold them; the last is the current one
LAYOUTS: dict[int, tuple[str, ...]] = {
    1: ("request_id", "key_id", "model", "provider", "endpoint", "status", "http_status",
        "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nanos", "error",
        "streamed", "latency_ms", "ttft_ms", "created_at"),
    2: ("request_id", "key_id", "model", "provider", "endpoint", "status", "http_status",
        "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nanos", "error",
        "streamed", "latency_ms", "ttft_ms", "model_requested", "deployment", "retries",
        "fallbacks", "upstream_ms", "created_at"),
}
VERSION = max(LAYOUTS)
FIELDS = LAYOUTS[VERSION]

# per layout, where each current field sits in its lines (None: the layout has no such field)
_POSITIONS = {version: tuple(fields.index(f) if f in fields else None for f in FIELDS)
              for version, fields in LAYOUTS.items()}


class SpoolRow(NamedTuple):
    """One decoded spool line."""

    values: list[Any]  # in FIELDS order; a field its layout lacked is None
    reservation: tuple[Any, Any] | None  # (admission id, budget period), if one was held


def encode(values: tuple[Any, ...], reservation: tuple[Any, Any] | None) -> bytes:
    """The spool line of a row (``values`` in FIELDS order), in the current layout."""
    if reservation is None:
        return orjson.dumps((VERSION, *values)) + b"\n"
    return orjson.dumps((VERSION, *values, *reservation)) + b"\n"


def decode(line: list[Any]) -> SpoolRow:
    """A parsed spool line of any layout, as the current layout's values.

    Raises ValueError for a line that is no row, or of a layout this gateway does not know
    (written by a newer one).
    """
    if not isinstance(line, list):
        raise ValueError("spool row is not a JSON array")
    head = line[0] if line else None
    if isinstance(head, int) and not isinstance(head, bool):
        positions = _POSITIONS.get(head)
        if positions is None:
            raise ValueError(f"spool row of unknown layout {head}")
        body = line[1:]
        width = len(LAYOUTS[head])
    else:  # the first layout, unversioned
        positions, body, width = _POSITIONS[1], line, len(LAYOUTS[1])
    n = len(body)
    values = [body[i] if i is not None and i < n else None for i in positions]
    reservation = (body[width], body[width + 1]) if n >= width + 2 else None
    return SpoolRow(values, reservation)
