"""POST /v1/embeddings: OpenAI's embeddings API for models with the ``embeddings`` capability.

``input`` is a string, a list of strings, a token array or a list of token arrays;
``encoding_format`` is ``float`` or ``base64`` (little-endian float32, what the ``openai`` SDK
asks for by default); ``dimensions`` shortens the vectors where the model allows it. Admission,
budgets and metering are the chat path's (:mod:`spaceai.api.metered`): the prompt tokens are
billed at the model's input price, the cost answered in ``x-spaceai-cost`` and ``usage.cost``.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from spaceai.api import metered
from spaceai.api.http import Request, Response, json_response
from spaceai.api.schemas import MAX_EMBEDDING_INPUTS
from spaceai.api.schemas import EmbeddingRequest as EmbeddingBody
from spaceai.auth import request_token
from spaceai.catalog import ModelConfig
from spaceai.fields import InvalidField, convert
from spaceai.gateway import Gateway
from spaceai.metering.meter import usd
from spaceai.providers.base import Provider
from spaceai.types import EmbeddingRequest, Usage

ENDPOINT = "/v1/embeddings"


def parse_embeddings(body: Any) -> EmbeddingRequest:
    """Validate an OpenAI embeddings body; a 400 naming the parameter on bad input.

    ``input``'s four shapes are its type's (:class:`~spaceai.api.schemas.EmbeddingRequest`);
    what the type cannot say is checked here: an array does not mix strings, token ids and
    token arrays. A bad item is refused naming ``input``, as OpenAI does; the message says
    which item.
    """
    try:
        typed = convert(body, EmbeddingBody)
    except InvalidField as exc:
        if exc.param is not None and exc.param.startswith("input["):
            raise InvalidField(exc.message, "input", exc.code or "invalid_value") from None
        raise
    raw = typed.input
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    else:
        kind = type(raw[0])
        if any(type(item) is not kind for item in raw):
            raise InvalidField("'input' must be a non-empty string, a list of strings, an array "
                               "of token ids or a list of such arrays.", "input")
        if kind is int:
            inputs = [raw]  # one token array is one input, however long
        elif len(raw) > MAX_EMBEDDING_INPUTS:
            raise InvalidField(f"'input' has {len(raw)} items; at most {MAX_EMBEDDING_INPUTS} "
                               "are allowed.", "input")
        else:
            inputs = raw
    return EmbeddingRequest(model=typed.model, inputs=inputs,
                            encoding_format=typed.encoding_format or "float",
                            dimensions=typed.dimensions, user=typed.user)


def encode_vector(vector: Any, fmt: str) -> list[float] | str:
    """One vector (float list, numpy row or base64 string) in the client's format."""
    if isinstance(vector, str):
        if fmt == "base64":
            return vector
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if hasattr(vector, "tolist"):  # a numpy row from the local model
        if fmt == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode()
        return vector.tolist()
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return list(vector)


async def embeddings(gw: Gateway, request: Request) -> Response:
    """POST /v1/embeddings."""
    started = time.perf_counter()
    key = await gw.key_cache.authenticate(request_token(request))
    arrival = await metered.arrive(gw, request, key, ENDPOINT, started)
    req = parse_embeddings(arrival.body)
    call = await metered.admit(arrival, req.for_metering(), "embeddings")

    async def attempt(provider: Provider, model: ModelConfig) -> dict[str, Any]:
        return await provider.embeddings(req, model)

    def usage_of(data: dict[str, Any]) -> Usage:
        return Usage.from_openai(data.get("usage"))

    served, data, nanos = await metered.run(call, attempt, usage_of)
    tokens = usage_of(data).prompt_tokens
    out = {
        "object": "list",
        "data": [{"object": "embedding", "index": item.get("index", i),
                  "embedding": encode_vector(item["embedding"], req.encoding_format)}
                 for i, item in enumerate(data.get("data") or [])],
        "model": served.id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "cost": usd(nanos)},
    }
    return json_response(200, out, call.headers)
