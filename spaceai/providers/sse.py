"""An incremental Server-Sent Events parser, shared by the OpenAI and Anthropic adapters.

Bytes may be cut anywhere (inside a line, inside a UTF-8 sequence, between ``\\r`` and
``\\n``); :meth:`SSEParser.feed` returns the events that became complete. Lines end with
``\\n``, ``\\r\\n`` or ``\\r``; ``:`` comment lines, ``id:`` and ``retry:`` fields are ignored.
"""

from __future__ import annotations

import re

Event = tuple[str | None, str]

_EOL = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Turns a byte stream into ``(event, data)`` pairs.

    ``event`` is the value of the ``event:`` field, or None when the event had none;
    ``data`` is the ``data:`` lines joined with ``\\n``. An event with no ``data:`` line is
    not dispatched (as the SSE specification says).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Add bytes; return the events completed by them, in order."""
        self._buf += chunk
        buf = self._buf
        out: list[Event] = []
        pos = 0
        while (m := _EOL.search(buf, pos)) is not None:
            if m.end() == len(buf) and m.group() == b"\r":
                break  # a \r at the end: wait to see whether \n follows
            self._line(bytes(buf[pos : m.start()]), out)
            pos = m.end()
        del buf[:pos]
        return out

    def flush(self) -> list[Event]:
        """End of stream: dispatch a last event that was not followed by a blank line."""
        out: list[Event] = []
        if self._buf:
            line = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            self._line(line, out)
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[Event]) -> None:
        if not raw:
            if self._data:
                out.append((self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
