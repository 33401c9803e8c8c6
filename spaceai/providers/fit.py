"""What a model can honour: a request fitted to one catalog model, or a 400 saying why not.

The rule: a request is honoured on the model it reaches, or refused with a 400 naming what
cannot be honoured; nothing is dropped silently. :func:`fit` is applied to each model a
request reaches (the one it names, then its fallbacks):

* features: ``tools`` / ``functions``, ``response_format`` (json_schema, json_object) and
  image parts need the model's ``tools``, ``json_schema`` and ``vision`` capabilities;
* parameters: OpenAI-compatible upstreams get every parameter, also those the gateway does
  not know (unless the model says ``strict_params: true``: then those are a 400); translated
  providers (Anthropic, the local model) get what they can honour, and anything else is a 400
  naming it, unless the model says ``drop_unsupported: true``: then it is dropped and named
  in the ``x-spaceai-dropped`` response header;
* defaults: the model's ``sampling_defaults`` (temperature 0.7, none for reasoning models)
  fill what the client did not send; ``max_tokens`` becomes ``max_completion_tokens`` where
  the upstream wants that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.types import ChatRequest, GatewayError

# Parameters that change nothing a model produces (identifiers, storage and caching hints,
# the effort of a reasoning step a model without one does not take): honoured everywhere.
HINTS = frozenset({"user", "metadata", "store", "prompt_cache_key", "safety_identifier",
                   "service_tier", "reasoning_effort", "verbosity"})
_TOOLING = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
HONOURED: dict[str, frozenset[str]] = {
    "anthropic": frozenset({"temperature", "top_p", "top_k", "stop", "max_tokens",
                            "max_completion_tokens", "n", "response_format"}) | _TOOLING,
    "local": frozenset({"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "stop",
                        "seed", "presence_penalty", "frequency_penalty", "logit_bias",
                        "logprobs", "top_logprobs", "max_tokens", "max_completion_tokens", "n",
                        "response_format"}) | _TOOLING,
}
_NEUTRAL: dict[str, Any] = {"n": 1, "best_of": 1, "presence_penalty": 0,
                            "frequency_penalty": 0, "echo": False, "logprobs": False}


@dataclass(slots=True)
class Fitted:
    """``req`` as ``model`` takes it, and the parameters dropped on the way (if allowed)."""

    req: ChatRequest
    dropped: list[str]


class Unfit(GatewayError):
    """A 400: the model cannot honour the request (a fallback that cannot is skipped)."""


def _refuse(message: str, param: str, code: str = "unsupported_parameter") -> Unfit:
    return Unfit(400, message, param=param, code=code)


def _neutral(name: str, value: Any) -> bool:
    """A value that asks for nothing (``n: 1``, ``logprobs: false``, ``{}``)."""
    if value is None or value is False or value == {} or value == []:
        return True
    return name in _NEUTRAL and value == _NEUTRAL[name]


def _check_features(req: ChatRequest, model: ModelConfig) -> None:
    p = req.params
    for name in ("tools", "functions"):
        if p.get(name) and not model.tools:
            raise _refuse(f"The model `{model.id}` does not support tools (function calling): "
                          f"remove '{name}', or use a model whose capabilities include 'tools' "
                          "(GET /v1/models).", name)
    rf = p.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_schema", "json_object") and (
        not model.json_schema
    ):
        raise _refuse(f"The model `{model.id}` does not support structured output: remove "
                      f"'response_format' ({rf['type']}), or use a model whose capabilities "
                      "include 'json_schema' (GET /v1/models).", "response_format")
    if not model.vision:
        for i, msg in enumerate(req.messages):
            content = msg.get("content") if isinstance(msg, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_audio",
                                                                   "file"):
                    raise _refuse(f"The model `{model.id}` does not take {part['type']} "
                                  "content: send text, or use a model whose capabilities "
                                  "include 'vision' (GET /v1/models).",
                                  f"messages[{i}].content[{j}]")


def _unsupported(req: ChatRequest, model: ModelConfig) -> list[str]:
    """The parameters ``model``'s provider cannot honour (none for OpenAI-compatible ones,
    unless the model is strict: then the ones the gateway does not know)."""
    if model.provider == "openai":
        return list(req.unknown) if model.strict_params else []
    honoured = HONOURED.get(model.provider, frozenset())
    return [
        name for name, value in req.params.items()
        if name not in honoured and not (name in HINTS and not (
            name == "reasoning_effort" and model.reasoning)) and not _neutral(name, value)
    ]


def fit(req: ChatRequest, model: ModelConfig) -> Fitted:
    """``req`` fitted to ``model``, or a :class:`GatewayError` 400 naming what it cannot
    honour. Fitting the same request to the same model again is a lookup."""
    last = req.fitted
    if last is not None and last[0] is model:
        return Fitted(last[1] or req, last[2])
    fitted = _fit(req, model)
    # kept without a reference back to ``req`` itself (no cycle for the collector to find)
    req.fitted = (model, None if fitted.req is req else fitted.req, fitted.dropped)
    return fitted


def _fit(req: ChatRequest, model: ModelConfig) -> Fitted:
    _check_features(req, model)
    dropped: list[str] = []
    unsupported = _unsupported(req, model)
    if unsupported:
        names = ", ".join(f"'{n}'" for n in unsupported)
        if model.provider == "openai":
            raise _refuse(f"Unrecognized request argument supplied: {', '.join(unsupported)} "
                          f"(the model `{model.id}` takes only the parameters SpaceAI knows).",
                          unsupported[0], "unknown_parameter")
        if not model.drop_unsupported:
            raise _refuse(f"The model `{model.id}` ({model.provider}) cannot honour {names}: "
                          "remove it from the request, or configure the model with "
                          "'drop_unsupported: true' to have it dropped and named in the "
                          "x-spaceai-dropped header.", unsupported[0])
        dropped = unsupported
    params = req.params
    defaults = model.sampling_defaults if req.sampling_defaults else None
    if defaults and all(k in params for k in defaults):
        defaults = None
    renamed = (model.provider == "openai" and model.max_tokens_param == "max_completion_tokens"
               and "max_tokens" in params and req.prompt is None)
    if not (dropped or defaults or renamed):
        return Fitted(req, dropped)
    if dropped:
        params = {k: v for k, v in params.items() if k not in dropped}
    params = {**defaults, **params} if defaults else dict(params)  # the client's values win
    if renamed:
        value = params.pop("max_tokens")
        params.setdefault("max_completion_tokens", value)
    return Fitted(req.with_params(params), dropped)
