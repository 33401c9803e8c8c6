"""Fake upstream providers (OpenAI, Anthropic) for SpaceAI's tests.

See :mod:`tests.fakes.upstream` for the full documentation.
"""

from .upstream import (  # noqa: F401
    CutStream,
    Error,
    FakeAnthropic,
    FakeOpenAI,
    Hang,
    RecordedRequest,
    Reply,
    SlowStream,
    StreamError,
    chunk_text,
    count_words,
    unused_port,
)

__all__ = [
    "CutStream",
    "Error",
    "FakeAnthropic",
    "FakeOpenAI",
    "Hang",
    "RecordedRequest",
    "Reply",
    "SlowStream",
    "StreamError",
    "chunk_text",
    "count_words",
    "unused_port",
]
