"""The deadlines of one upstream attempt, the same for every provider.

* A non-streaming attempt has one deadline, ``timeout_s`` after it started: connecting, the
  answer's headers (sooner if ``first_byte_timeout_s`` is set) and its whole body must be done
  by then, however slowly the bytes trickle in.
* A stream has a time-to-first-token deadline (``first_byte_timeout_s``, else ``timeout_s``):
  connecting, the headers and the first *content* event. After that, no silence between two
  content events may last longer than ``stream_idle_timeout_s``. Keep-alives (SSE ``:``
  comments, Anthropic ``ping`` events) and events that carry nothing are not content, so an
  upstream that only pings is ended like one that says nothing.

Deadlines are absolute ``loop.time()`` values: each wait on the upstream is bounded by one
timer handle at the current deadline, and marking progress is a float store.
"""

from __future__ import annotations

import asyncio

from spaceai.catalog import ModelConfig
from spaceai.types import UpstreamError, Usage


def attempt_deadlines(model: ModelConfig) -> tuple[float, float]:
    """(the headers' deadline, the whole answer's deadline) of a non-streaming attempt."""
    now = asyncio.get_running_loop().time()
    total = now + model.timeout_s
    if model.first_byte_timeout_s:
        return min(total, now + model.first_byte_timeout_s), total
    return total, total


class StreamClock:
    """When a stream must next show progress: first content by the time-to-first-token
    deadline, then never silent for longer than the model's ``stream_idle_timeout_s``."""

    __slots__ = ("_loop", "model", "at", "started")

    def __init__(self, model: ModelConfig) -> None:
        self._loop = asyncio.get_running_loop()
        self.model = model
        self.at = self._loop.time() + (model.first_byte_timeout_s or model.timeout_s)
        self.started = False  # a content event arrived

    def progress(self) -> None:
        """A content event arrived: the silence deadline starts again from now."""
        self.started = True
        self.at = self._loop.time() + self.model.stream_idle_timeout_s

    def why(self) -> str:
        """Which deadline passed, for the error message."""
        if self.started:
            return f"stream silent for {self.model.stream_idle_timeout_s:g} s"
        first = self.model.first_byte_timeout_s or self.model.timeout_s
        return f"no content within {first:g} s"

    def expired(self, usage: Usage | None = None) -> UpstreamError:
        """The 504 for a passed deadline; retryable only before any content (the router only
        retries before anything reached the client anyway)."""
        return timed_out(self.model, self.why(), usage=usage, retryable=not self.started)


def timed_out(model: ModelConfig, what: str, usage: Usage | None = None,
              retryable: bool = True) -> UpstreamError:
    """The gateway's 504 for an upstream that missed a deadline."""
    return UpstreamError(504, f"model {model.id}: upstream timed out ({what})", type="timeout",
                         code="upstream_timeout", retryable=retryable, usage=usage)
