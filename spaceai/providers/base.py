"""The interface every provider implements.

A provider turns a :class:`~spaceai.types.ChatRequest` into an OpenAI-shaped answer:

* ``chat`` returns a ``chat.completion`` dict whose ``usage`` holds the exact token counts;
* ``chat_stream`` yields :class:`~spaceai.providers.events.StreamEvent` s (a ``Chunk``, one
  ``chat.completion.chunk`` dict, or a ``WireBlock`` of upstream bytes carrying several) and
  ends with one chunk whose ``choices`` is empty and whose ``usage`` holds the counts (always,
  whether or not the client asked for it: the gateway hides it from clients that did not).
  The API layer only calls the events' methods (``sse_bytes()``, ``chunks()``, ``produced``,
  ``final_usage``), never asks which kind it got;
* ``completion`` / ``completion_stream`` do the same for legacy text completions
  (``text_completion`` objects) for models with the ``completions`` capability;
* ``responses`` / ``responses_stream`` pass a Responses API body through to an upstream that
  speaks that API natively (a ``response`` object; its stream events as
  :class:`~spaceai.providers.events.NamedEvent` s, ending with ``response.completed``,
  ``.incomplete`` or ``.failed``), for catalog models configured with ``responses_api: native``;
* ``embeddings`` returns an OpenAI ``list`` of ``embedding`` objects (each ``embedding`` a list
  of floats, a base64 string as the request's ``encoding_format`` asked, or a numpy vector)
  with ``usage.prompt_tokens``, for models with the ``embeddings`` capability;
* ``count_tokens`` returns the exact prompt tokens of a chat request, or None when the
  provider has no way to count them exactly.

Pass-through is part of the interface: a provider whose ``speaks_messages`` is true takes an
Anthropic Messages body as it is (``messages``, ``messages_stream`` of
:class:`~spaceai.providers.events.NamedEvent` s, ``count_message_tokens``); the others are reached through the translation to a
:class:`~spaceai.types.ChatRequest`. Likewise ``responses`` / ``responses_stream`` for models
configured with ``responses_api: native``.

Failures raise :class:`~spaceai.types.UpstreamError`. A stream that fails after it started
raises it from the iterator, with ``usage`` set to what was produced so far. Closing the
iterator early (``aclose``) must cancel the upstream work at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.providers.events import NamedEvent, StreamEvent
from spaceai.types import ChatRequest, EmbeddingRequest, GatewayError


class Provider:
    """Base class: a provider serves the catalog models whose ``provider`` names it."""

    name = "base"
    speaks_messages = False  # takes Anthropic Messages bodies natively (pass-through)

    async def start(self) -> None:
        """Open pools, load weights: anything the first request should not pay for."""

    async def close(self) -> None:
        """Release what ``start`` opened."""

    async def chat(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        raise NotImplementedError

    def chat_stream(self, req: ChatRequest, model: ModelConfig) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def completion(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        raise GatewayError(400, f"model {model.id} does not support /v1/completions", param="model")

    def completion_stream(
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncIterator[StreamEvent]:
        raise GatewayError(400, f"model {model.id} does not support /v1/completions", param="model")

    async def embeddings(self, req: EmbeddingRequest, model: ModelConfig) -> dict[str, Any]:
        raise GatewayError(400, f"model {model.id} does not support /v1/embeddings", param="model")

    async def count_tokens(self, req: ChatRequest, model: ModelConfig) -> int | None:
        """The exact prompt tokens of ``req`` on ``model``; None: this provider cannot say."""
        return None

    async def responses(self, body: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
        raise GatewayError(400, f"model {model.id} has no native Responses API", param="model")

    def responses_stream(
        self, body: dict[str, Any], model: ModelConfig
    ) -> AsyncIterator[NamedEvent]:
        raise GatewayError(400, f"model {model.id} has no native Responses API", param="model")

    async def messages(self, body: dict[str, Any], model: ModelConfig,
                       headers: dict[str, str] | None = None) -> dict[str, Any]:
        raise GatewayError(400, f"model {model.id} has no native Messages API", param="model")

    def messages_stream(self, body: dict[str, Any], model: ModelConfig,
                        headers: dict[str, str] | None = None
                        ) -> AsyncIterator[NamedEvent]:
        raise GatewayError(400, f"model {model.id} has no native Messages API", param="model")

    async def count_message_tokens(self, body: dict[str, Any], model: ModelConfig,
                                   headers: dict[str, str] | None = None) -> int:
        raise GatewayError(400, f"model {model.id} has no native Messages API", param="model")
