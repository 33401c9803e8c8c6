"""Anthropic Messages API: the provider, and the translations to and from OpenAI's shape.

* :mod:`.request` — ChatRequest -> Messages request body
* :mod:`.response` — Messages response -> ``chat.completion``
* :mod:`.stream` — Messages SSE events -> ``chat.completion.chunk`` dicts
* :mod:`.errors` — Anthropic errors -> :class:`~spaceai.types.UpstreamError`
* :mod:`.provider` — :class:`AnthropicProvider`
* :mod:`.reverse` — the other way round, for the ``/v1/messages`` endpoint
"""

from spaceai.providers.anthropic.provider import AnthropicProvider

__all__ = ["AnthropicProvider"]
