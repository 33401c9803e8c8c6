"""The local provider: catalog models with ``provider: local``, served in-process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.providers.base import Provider
from spaceai.providers.events import Chunk
from spaceai.providers.local.chat import CHAT, TEXT, aggregate, stream, template_body
from spaceai.providers.local.embeddings import LocalEmbedder
from spaceai.providers.local.engine import Engines
from spaceai.types import ChatRequest, EmbeddingRequest

log = logging.getLogger(__name__)


class LocalProvider(Provider):
    """Serves catalog models with ``provider: local``: chat and text completions from an
    in-process llama.cpp engine, embeddings from an in-process encoder.

    One engine per model file (``ModelConfig.model_path``, or the bundled SmolLM2); the
    default one is loaded by :meth:`start`, any other lazily on its first request.
    """

    name = "local"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_parallel: int = 4,
        n_threads: int = 2,
        n_ctx: int = 8192,
        max_workers: int = 64,
    ) -> None:
        self.engines = Engines(model_path, n_parallel=n_parallel, n_threads=n_threads,
                               n_ctx=n_ctx, max_workers=max_workers)
        self.embedder = LocalEmbedder()  # local models with the embeddings capability

    @property
    def active_requests(self) -> int:
        """Engine calls currently running (a stopped stream leaves this promptly)."""
        return self.engines.active

    async def start(self) -> None:
        """Load the default model, so that the first request does not wait for it."""
        await self.engines.get(None)

    async def close(self) -> None:
        await self.embedder.close()
        await self.engines.close()

    def chat_stream(
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncGenerator[Chunk, None]:
        return stream(self.engines, req, model, CHAT)

    async def chat(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        return await aggregate(self.chat_stream(req, model), CHAT)

    def completion_stream(
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncGenerator[Chunk, None]:
        return stream(self.engines, req, model, TEXT)

    async def completion(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        return await aggregate(self.completion_stream(req, model), TEXT)

    async def count_tokens(self, req: ChatRequest, model: ModelConfig) -> int | None:
        """The prompt's tokens as the engine will see them (its chat template, its
        tokenizer): exactly the ``prompt_tokens`` the answer will report."""
        engine = await self.engines.get(model.model_path)
        body = template_body(req, model)
        try:
            return await asyncio.to_thread(engine.count_prompt_tokens, body)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("local token count failed: %s", exc)
            return None

    async def embeddings(self, req: EmbeddingRequest, model: ModelConfig) -> dict[str, Any]:
        """Served by :mod:`spaceai.providers.local.embeddings`, not by llama.cpp."""
        return await self.embedder.embeddings(req, model)
