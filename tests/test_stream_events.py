"""The provider stream contract: one event type, whose methods are all the API layer calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spaceai.providers.events import Chunk, NamedEvent, WireBlock
from spaceai.types import Usage

API = Path(__file__).resolve().parents[1] / "spaceai" / "api"


def test_api_modules_never_ask_which_event_nor_reach_into_a_provider():
    offending = [f"{path.name}:{n}: {line.strip()}"
                 for path in sorted(API.glob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"WireBlock|_post\b|_post\(|type: ignore", line)]
    assert offending == []


def test_a_chunk_and_a_wire_block_answer_the_same_questions():
    content = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    empty = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": ""}}]}
    final = {"id": "c", "model": "m", "choices": [], "usage": {"completion_tokens": 9}}
    block = WireBlock(b"data: " + json.dumps(content, separators=(",", ":")).encode()
                      + b"\n\n", produced=1)
    for event, produced, usage in ((Chunk(content), 1, None), (Chunk(empty), 0, None),
                                   (Chunk(final), 0, Usage(completion_tokens=9)),
                                   (block, 1, None)):
        assert event.produced == produced and event.final_usage == usage
        sse = event.sse_bytes()
        assert sse.startswith(b"data: ") and sse.endswith(b"\n\n")
        assert [dict(c) for c in event.chunks()] == [json.loads(sse[6:])]


def test_a_pass_through_event_answers_them_too():
    """Claude Messages and Responses streams pass through as named events: the provider says
    what they produced and, on the closing one, the stream's usage."""
    delta = NamedEvent("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": "hi"}}, 1)
    stop = NamedEvent("message_stop", {"type": "message_stop"}, 0, Usage(3, 9))
    for event, produced, usage in ((delta, 1, None), (stop, 0, Usage(3, 9))):
        assert event.produced == produced and event.final_usage == usage
        assert event.chunks() == ()
        name, data = event.sse_bytes().split(b"\n", 1)
        assert name == b"event: " + event.name.encode()
        assert data.startswith(b"data: ") and json.loads(data[6:]) == event.data


def test_api_modules_never_test_a_providers_class_or_name():
    pattern = (r"isinstance\([^)]*provider|(Anthropic|OpenAI|Local)Provider\b"
               r"|provider(\.name)? ==|\.provider ==")
    offending = [f"{path.name}:{n}: {line.strip()}"
                 for path in sorted(API.glob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(pattern, line)]
    assert offending == []


def test_a_request_with_other_params_keeps_every_other_field():
    """``ChatRequest.with_params`` (the fit's fast copy) carries every field but params."""
    import dataclasses

    from spaceai.types import ChatRequest

    req = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                      params={"a": 1}, stream=True, include_usage=True, prompt="p",
                      unknown=("x",), sampling_defaults=False)
    copy = req.with_params({"b": 2})
    assert copy.params == {"b": 2} and req.params == {"a": 1}
    for f in dataclasses.fields(ChatRequest):
        if f.name not in ("params", "fitted"):
            assert getattr(copy, f.name) == getattr(req, f.name), f.name
