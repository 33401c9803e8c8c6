"""Native pass-through for ``/v1/messages`` to a Claude model: the bodies the provider sends.

The client's Messages body goes upstream as it is (only ``model`` becomes the upstream name,
and ``role: system`` entries of ``messages`` are folded into ``system``), so every Anthropic
feature (cache_control, thinking, context_management, citations...) survives; the answer
comes back as it is too. The gateway only reads the usage out of it, for metering. The calls
themselves are :class:`~spaceai.providers.anthropic.provider.AnthropicProvider` methods.
"""

from __future__ import annotations

from typing import Any

# client headers a native call carries upstream (the provider sets its own defaults)
FORWARDED_HEADERS = (b"anthropic-beta", b"anthropic-version")

# the fields /v1/messages/count_tokens takes (it refuses any other, as max_tokens or stream)
COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "context_management",
    "mcp_servers", "output_config", "cache_control", "speed", "compaction", "billing_policy",
    "user_profile_id", "workspace_id",
})


def _blocks(system: Any) -> list[Any]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    return list(system) if isinstance(system, list) else [system]


def fold_system_messages(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its ``role: system`` messages appended to ``system``, in order.

    Claude Code sends such entries (reminders about the environment and tools); the Messages
    API takes system text only in ``system``. Their blocks keep their ``cache_control``. A
    body without any is returned as it is.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(
            isinstance(m, dict) and m.get("role") == "system" for m in messages):
        return body
    system = _blocks(body.get("system"))
    kept = []
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "system":
            system.extend(_blocks(msg.get("content")))
        else:
            kept.append(msg)
    return dict(body, system=system, messages=kept)


def upstream_body(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    """The Messages body to send for ``body``."""
    out = fold_system_messages(body)
    out = dict(out, model=upstream_model)
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return out


def count_tokens_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """The ``/v1/messages/count_tokens`` body for a Messages body."""
    out = fold_system_messages(body)
    return {k: v for k, v in out.items() if k in COUNT_TOKENS_FIELDS} | {"model": upstream_model}
