"""The model catalog: the built-in one, or a YAML file in the contract's format."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

PROVIDERS = ("openai", "anthropic", "local")
FEATURES = ("tools", "json_schema", "vision", "reasoning")
DEFAULT_TEMPERATURE = 0.7  # the seed's default, for models that take a temperature
# OpenAI models that reason before answering: they take no temperature and want
# max_completion_tokens (o1, o3, o4-mini, the gpt-5 family)
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
FEATURE_DEFAULTS: dict[str, dict[str, bool]] = {
    "openai": {"tools": True, "json_schema": True, "vision": True},
    "anthropic": {"tools": True, "json_schema": True, "vision": True},
    # llama.cpp: grammar-constrained JSON. No tools: with SmolLM2's chat template the engine
    # leaves them out of the prompt and answers prose, also to tool_choice "required"
    "local": {"tools": False, "json_schema": True, "vision": False},
}
LOCAL_CHAT_MODEL = "smollm2-135m-instruct"
LOCAL_EMBEDDING_MODEL = "all-minilm-l6-v2"

# created timestamps are fixed so /v1/models is stable across restarts
_CREATED = 1677858242


@dataclass(slots=True)
class ModelConfig:
    """One catalog entry: what clients call ``model``, and how to reach it."""

    id: str
    provider: str
    upstream_model: str
    base_url: str | None = None
    api_key: str | None = None  # literal or env:NAME, resolved lazily by ``credential()``
    owned_by: str = "spaceai"
    capabilities: list[str] = field(default_factory=lambda: ["chat"])
    input_price: float = 0.0  # USD per token
    output_price: float = 0.0
    context_window: int | None = None
    max_output_tokens: int | None = None  # default max_tokens when the client sends none
    fallbacks: list[str] = field(default_factory=list)
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    first_byte_timeout_s: float | None = None  # a stream's first content; default timeout_s
    stream_idle_timeout_s: float = 60.0  # the longest silence between a stream's content events
    max_retries: int = 2
    model_path: str | None = None  # local models only
    deployments: list[dict[str, Any]] = field(default_factory=list)
    created: int = _CREATED
    extra: dict[str, Any] = field(default_factory=dict)
    # what the model can honour (defaults per provider, see ``FEATURE_DEFAULTS``)
    tools: bool = True
    json_schema: bool = True
    vision: bool = False
    reasoning: bool = False
    sampling_defaults: dict[str, Any] = field(default_factory=dict)  # sent when the client sent none
    max_tokens_param: str = "max_tokens"  # or max_completion_tokens (OpenAI reasoning models)
    strict_params: bool = False  # OpenAI-compatible: unknown parameters are a 400, not forwarded
    drop_unsupported: bool = False  # translated: unsupported parameters dropped, not a 400

    def credential(self) -> str | None:
        """The upstream API key, or None when it is not configured."""
        return resolve_secret(self.api_key)

    def missing_credential(self) -> str | None:
        """The name of the missing setting when this model cannot be reached, else None."""
        if self.provider == "local" or self.api_key is None:
            return None
        if self.credential():
            return None
        if self.api_key.startswith("env:"):
            return self.api_key[4:]
        return "api_key"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round(prompt_tokens * self.input_price + completion_tokens * self.output_price, 10)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "capabilities": self.all_capabilities(),
            "pricing": {"input": self.input_price, "output": self.output_price},
        }
        if self.context_window:
            out["context_window"] = self.context_window
        if self.max_output_tokens:
            out["max_output_tokens"] = self.max_output_tokens
        return out

    def all_capabilities(self) -> list[str]:
        """The endpoints it serves (``chat``, ``completions``, ``embeddings``), then the
        features it honours (``tools``, ``json_schema``, ``vision``, ``reasoning``)."""
        caps = [c for c in self.capabilities if c not in FEATURES]
        if "chat" in caps or "completions" in caps:
            caps += [f for f in FEATURES if getattr(self, f)]
        return caps


def resolve_secret(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("env:"):
        return os.environ.get(value[4:]) or None
    return value


def _entry(raw: dict[str, Any]) -> ModelConfig:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ValueError(f"catalog entry needs an 'id': {raw!r}")
    provider = raw.get("provider", "openai")
    if provider not in PROVIDERS:
        raise ValueError(f"model {raw['id']}: provider must be one of {', '.join(PROVIDERS)}")
    pricing = raw.get("pricing") or {}
    known = {
        "id", "provider", "upstream_model", "base_url", "api_key", "owned_by", "capabilities",
        "pricing", "context_window", "max_output_tokens", "fallbacks", "timeout_s",
        "connect_timeout_s", "first_byte_timeout_s", "stream_idle_timeout_s", "max_retries", "model_path", "deployments",
        "created", "defaults", "max_tokens_param", "strict_params", "drop_unsupported",
        *FEATURES,
    }
    default_base = {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com/v1",
    }.get(provider)
    upstream_model = str(raw.get("upstream_model") or raw["id"])
    listed = set(raw.get("capabilities") or [])
    features = dict(FEATURE_DEFAULTS[provider])
    features["reasoning"] = provider == "openai" and bool(_REASONING_MODEL.match(upstream_model))
    for name in FEATURES:
        if name in listed:
            features[name] = True
        if raw.get(name) is not None:
            features[name] = bool(raw[name])
    sampling = raw.get("defaults")
    if sampling is None:
        sampling = {} if features["reasoning"] else {"temperature": DEFAULT_TEMPERATURE}
    if not isinstance(sampling, dict):
        raise ValueError(f"model {raw['id']}: defaults must be a mapping (e.g. temperature: 0.7)")
    max_tokens_param = raw.get("max_tokens_param") or (
        "max_completion_tokens" if provider == "openai" and features["reasoning"] else "max_tokens"
    )
    if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
        raise ValueError(f"model {raw['id']}: max_tokens_param must be max_tokens or "
                         "max_completion_tokens")
    return ModelConfig(
        **features,
        sampling_defaults=dict(sampling),
        max_tokens_param=max_tokens_param,
        strict_params=bool(raw.get("strict_params", False)),
        drop_unsupported=bool(raw.get("drop_unsupported", False)),
        id=str(raw["id"]),
        provider=provider,
        upstream_model=upstream_model,
        base_url=(raw.get("base_url") or default_base),
        api_key=raw.get("api_key"),
        owned_by=str(raw.get("owned_by") or ("spaceai" if provider == "local" else provider)),
        capabilities=[c for c in raw.get("capabilities") or ["chat"] if c not in FEATURES],
        input_price=float(pricing.get("input", 0) or 0),
        output_price=float(pricing.get("output", 0) or 0),
        context_window=raw.get("context_window"),
        max_output_tokens=raw.get("max_output_tokens"),
        fallbacks=list(raw.get("fallbacks") or []),
        timeout_s=float(raw.get("timeout_s", 600)),
        connect_timeout_s=float(raw.get("connect_timeout_s", 10)),
        first_byte_timeout_s=(
            float(raw["first_byte_timeout_s"]) if raw.get("first_byte_timeout_s") else None
        ),
        stream_idle_timeout_s=float(raw.get("stream_idle_timeout_s") or 60),
        max_retries=int(raw.get("max_retries", 2)),
        model_path=raw.get("model_path"),
        deployments=list(raw.get("deployments") or []),
        created=int(raw.get("created", _CREATED)),
        extra={k: v for k, v in raw.items() if k not in known},
    )


BUILTIN: list[dict[str, Any]] = [
    {
        "id": "gpt-4o",
        "provider": "openai",
        "api_key": "env:OPENAI_API_KEY",
        "owned_by": "openai-internal",
        "capabilities": ["chat", "completions"],
        "pricing": {"input": 0.00003, "output": 0.00006},
        "context_window": 128000,
    },
    {
        "id": "claude-3.5-sonnet",
        "provider": "anthropic",
        "upstream_model": "claude-3-5-sonnet-latest",
        "api_key": "env:ANTHROPIC_API_KEY",
        "owned_by": "anthropic",
        "capabilities": ["chat"],
        "pricing": {"input": 0.00002, "output": 0.00005},
        "context_window": 200000,
        "max_output_tokens": 8192,
    },
    {
        "id": "claude-3.7-sonnet",
        "provider": "anthropic",
        "upstream_model": "claude-3-7-sonnet-latest",
        "api_key": "env:ANTHROPIC_API_KEY",
        "owned_by": "anthropic",
        "capabilities": ["chat"],
        "pricing": {"input": 0.00005, "output": 0.0001},
        "context_window": 200000,
        "max_output_tokens": 8192,
    },
    {
        "id": LOCAL_CHAT_MODEL,
        "provider": "local",
        "owned_by": "spaceai",
        "capabilities": ["chat", "completions"],
        "pricing": {"input": 0, "output": 0},
        "context_window": 8192,
    },
    {
        "id": LOCAL_EMBEDDING_MODEL,
        "provider": "local",
        "owned_by": "spaceai",
        "capabilities": ["embeddings"],
        "pricing": {"input": 0, "output": 0},
        "context_window": 256,
    },
]


class Catalog:
    """The models this gateway serves, by id, in the order they were declared."""

    def __init__(self, models: list[ModelConfig]) -> None:
        self.models: dict[str, ModelConfig] = {}
        for m in models:
            if m.id in self.models:
                raise ValueError(f"model {m.id} is declared twice")
            self.models[m.id] = m
        for m in models:
            for fb in m.fallbacks:
                if fb not in self.models:
                    raise ValueError(f"model {m.id}: fallback {fb} is not in the catalog")

    def get(self, model_id: str) -> ModelConfig | None:
        return self.models.get(model_id)

    def __iter__(self):
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def from_dicts(cls, entries: list[dict[str, Any]]) -> Catalog:
        return cls([_entry(e) for e in entries])

    @classmethod
    def load(cls, path: str | None) -> Catalog:
        """The YAML catalog at ``path``, or the built-in one when path is None."""
        if not path:
            return cls.from_dicts(BUILTIN)
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list) or not models:
            raise ValueError(f"{path}: expected a top-level 'models' list")
        return cls.from_dicts(models)
