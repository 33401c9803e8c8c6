"""The one internal representation every edge translates to and from.

A chat request is kept in OpenAI's shape (messages are OpenAI message dicts) because that is
the gateway's main surface; the Anthropic adapters translate to and from it exactly once.
A stream is a sequence of OpenAI ``chat.completion.chunk`` dicts; the last one a provider
yields carries ``usage`` (with ``choices: []``), whether or not the client asked for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_MAX_COUNT = 2**40
_NO_DETAILS: dict[str, Any] = {}


def token_count(value: Any) -> int | None:
    """A token count as an upstream reported it: a non-negative integer, or None if it is not.

    An integral float (``12.0``) is taken; anything else (negative, fractional, text, a
    number past any real count) is not a count, and the request is billed at its reservation.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < _MAX_COUNT else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < _MAX_COUNT:
        return int(value)
    return None


@dataclass(slots=True)
class Usage:
    """Token counts of one request, as the model or upstream reported them.

    ``problem`` says why the upstream's report could not be used (it is then billed at the
    request's reservation, never at zero).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from a prompt cache (subset of prompt_tokens)
    cache_creation_tokens: int = 0  # prompt tokens written to a prompt cache (Anthropic)
    reasoning_tokens: int = 0  # completion tokens spent on reasoning (subset of completion)
    problem: str | None = None

    def count(self, data: dict[str, Any], name: str, default: int = 0) -> int:
        """``data[name]`` as a token count; a bad one is noted in ``problem`` and counts 0."""
        raw = data.get(name)
        if raw is None:
            return default
        if raw.__class__ is int and 0 <= raw < _MAX_COUNT:  # the usual case, checked inline
            return raw
        value = token_count(raw)
        if value is None:
            self.problem = f"upstream reported {name}={str(raw)[:40]!r}, not a token count"
            return 0
        return value

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self, cost: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens or self.cache_creation_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
            if self.cache_creation_tokens:
                out["prompt_tokens_details"]["cache_creation_tokens"] = self.cache_creation_tokens
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if cost is not None:
            out["cost"] = cost
        return out

    def _details(self, data: dict[str, Any], name: str, field: str) -> int:
        """``data[name][field]`` as a token count (0 when the details object is absent)."""
        details = data.get(name)
        return self.count(details, field) if isinstance(details, dict) else 0

    @classmethod
    def _of(cls, data: Any) -> tuple[Usage, dict[str, Any] | None]:
        """A fresh usage and ``data`` if it is an object to read (else None, noting why)."""
        u = cls()
        if not data:
            return u, None
        if not isinstance(data, dict):
            u.problem = "upstream usage is not an object"
            return u, None
        return u, data

    @classmethod
    def from_openai(cls, data: Any) -> Usage:
        """A Chat Completions / Completions / Embeddings ``usage`` object."""
        if data.__class__ is dict:  # the usual object, every count a plain integer: inline
            p, c = data.get("prompt_tokens", 0), data.get("completion_tokens", 0)
            pd = data.get("prompt_tokens_details") or _NO_DETAILS
            cd = data.get("completion_tokens_details") or _NO_DETAILS
            if pd.__class__ is dict and cd.__class__ is dict:
                cached, created = pd.get("cached_tokens", 0), pd.get("cache_creation_tokens", 0)
                reasoning = cd.get("reasoning_tokens", 0)
                if (p.__class__ is int and c.__class__ is int and cached.__class__ is int
                        and created.__class__ is int and reasoning.__class__ is int
                        and 0 <= p < _MAX_COUNT and 0 <= c < _MAX_COUNT
                        and 0 <= cached < _MAX_COUNT and 0 <= created < _MAX_COUNT
                        and 0 <= reasoning < _MAX_COUNT):
                    return cls(p, c, cached, created, reasoning)
        u, data = cls._of(data)
        if data is not None:
            u.prompt_tokens = u.count(data, "prompt_tokens")
            u.completion_tokens = u.count(data, "completion_tokens")
            u.cached_tokens = u._details(data, "prompt_tokens_details", "cached_tokens")
            u.cache_creation_tokens = u._details(data, "prompt_tokens_details",
                                                 "cache_creation_tokens")
            u.reasoning_tokens = u._details(data, "completion_tokens_details", "reasoning_tokens")
        return u

    @classmethod
    def from_responses(cls, data: Any) -> Usage:
        """A Responses API ``usage`` object (``input_tokens`` / ``output_tokens``)."""
        u, data = cls._of(data)
        if data is not None:
            u.prompt_tokens = u.count(data, "input_tokens")
            u.completion_tokens = u.count(data, "output_tokens")
            u.cached_tokens = u._details(data, "input_tokens_details", "cached_tokens")
            u.reasoning_tokens = u._details(data, "output_tokens_details", "reasoning_tokens")
        return u

    def add_anthropic(self, data: Any) -> Usage:
        """Take in an Anthropic ``usage`` object (a message's, or a stream event's: fields it
        leaves out keep their value; ``output_tokens`` is cumulative). Returns ``self``.

        prompt_tokens = input + cache_read + cache_creation; cached_tokens = cache_read.
        """
        if not data:
            return self
        if not isinstance(data, dict):
            self.problem = "upstream usage is not an object"
            return self
        names = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        if any(data.get(n) is not None for n in names):
            base = self.prompt_tokens - self.cached_tokens - self.cache_creation_tokens
            fresh = self.count(data, "input_tokens", base)
            read = self.count(data, "cache_read_input_tokens", self.cached_tokens)
            created = self.count(data, "cache_creation_input_tokens", self.cache_creation_tokens)
            self.prompt_tokens = fresh + read + created
            self.cached_tokens = read
            self.cache_creation_tokens = created
        self.completion_tokens = self.count(data, "output_tokens", self.completion_tokens)
        return self

    @classmethod
    def from_anthropic(cls, data: Any) -> Usage:
        """An Anthropic Messages ``usage`` object."""
        return cls().add_anthropic(data)


@dataclass(slots=True)
class ChatRequest:
    """A validated chat (or legacy text) completion request.

    ``params`` holds every other OpenAI parameter the client sent, already validated
    (``stop`` is always a list when set), and the top-level parameters the gateway does not
    know, as they came; their names are in ``unknown``. What a model cannot honour is refused
    or dropped, and the model's sampling defaults are added when ``sampling_defaults`` is set,
    by :func:`spaceai.providers.fit.fit` for each model the request reaches.
    For a legacy ``/v1/completions`` request ``prompt`` is set and ``messages`` is empty.
    """

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    prompt: str | None = None
    unknown: tuple[str, ...] = ()
    sampling_defaults: bool = True  # the model's defaults (temperature 0.7) when absent
    # the last fit of this request (model, fitted): admission and the first attempt fit the
    # same request to the same model, so the second is a lookup (spaceai/providers/fit.py)
    fitted: tuple[Any, ChatRequest | None, list[str]] | None = field(
        default=None, repr=False, compare=False)
    # (estimate, bound) of the prompt's tokens, once walked (spaceai/metering/tokens.py)
    sizes: tuple[int, int] | None = field(default=None, repr=False, compare=False)

    def with_params(self, params: dict[str, Any]) -> ChatRequest:
        """This request with other ``params`` (a constructor call: ``dataclasses.replace``
        costs five times as much on the request path)."""
        return ChatRequest(self.model, self.messages, params, self.stream, self.include_usage,
                           self.prompt, self.unknown, self.sampling_defaults)

    @property
    def max_tokens(self) -> int | None:
        return self.params.get("max_completion_tokens") or self.params.get("max_tokens")


@dataclass(slots=True)
class EmbeddingRequest:
    """A validated embeddings request. ``inputs`` is always a list: strings, or token-id lists."""

    model: str
    inputs: list[str | list[int]]
    encoding_format: str = "float"  # what the client wants back: float or base64
    dimensions: int | None = None
    user: str | None = None

    def for_metering(self) -> ChatRequest:
        """The request as budgets and meters see one: all of it prompt, no output."""
        text = "\n".join(i if isinstance(i, str) else " " * (4 * len(i)) for i in self.inputs)
        return ChatRequest(model=self.model, messages=[], params={"max_tokens": 1}, prompt=text)


class GatewayError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class UpstreamError(GatewayError):
    """A failure talking to a provider.

    ``retryable`` says whether another try (same or another deployment) may succeed;
    ``deployment_fault`` that this deployment will keep failing (its key, account or upstream
    model name) while another deployment or a fallback model may not. ``retry_after`` is the
    upstream's Retry-After in seconds, when it sent one; the client hears it too, rounded up.
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "upstream_error",
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        usage: Usage | None = None,
        deployment_fault: bool = False,
    ) -> None:
        headers = {"retry-after": str(math.ceil(retry_after))} if retry_after is not None else None
        super().__init__(status, message, type=type, code=code, headers=headers)
        self.retryable = retryable
        self.deployment_fault = deployment_fault
        self.retry_after = retry_after
        self.usage = usage or Usage()
