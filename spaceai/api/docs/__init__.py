"""The documentation page served at ``/``, with a live playground.

The page template and its static assets are read once at import; ``render_page`` only
substitutes the model table, the playground's model options and the server's base URL into
the pre-split template, HTML-escaping everything it inserts. The chat parameter table is
rendered once, from the JSON Schema of the chat body type that ``/openapi.json`` publishes
and the validator checks with (:mod:`spaceai.api.schemas`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from html import escape
from pathlib import Path
from typing import Any

from spaceai.api.schemas import SCHEMAS

__all__ = ["STATIC_FILES", "render_page"]

_STATIC_DIR = Path(__file__).with_name("static")
_TOKEN = re.compile(
    r"\{\{(base_url|example_model|model_rows|model_options|model_count|chat_parameter_rows)\}\}")

_CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "local": "Local"}
PREFERRED_EXAMPLE_MODEL = "gpt-4o"


def _load_static() -> dict[str, tuple[bytes, str]]:
    files = {}
    for path in sorted(_STATIC_DIR.iterdir()):
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type:
            files[f"/static/{path.name}"] = (path.read_bytes(), content_type)
    return files


STATIC_FILES: dict[str, tuple[bytes, str]] = _load_static()

# literal text at even indices, placeholder names at odd indices
_TEMPLATE_PARTS: list[str] = _TOKEN.split((_STATIC_DIR / "page.html").read_text("utf-8"))


def render_page(models: list[dict[str, Any]], base_url: str) -> bytes:
    """The full HTML documentation page for ``models`` (``/v1/models`` dicts plus "provider")."""
    values = {
        "base_url": escape(base_url.rstrip("/")),
        "example_model": escape(_example_model(models)),
        "model_rows": "".join(_model_row(m) for m in models)
        or '<tr><td colspan="5">No models are configured.</td></tr>',
        "model_options": _model_options(models),
        "model_count": str(len(models)),
        "chat_parameter_rows": CHAT_PARAMETER_ROWS,
    }
    out = [part if i % 2 == 0 else values[part] for i, part in enumerate(_TEMPLATE_PARTS)]
    return "".join(out).encode("utf-8")


def _example_model(models: list[dict[str, Any]]) -> str:
    ids = [str(m.get("id", "")) for m in models]
    if PREFERRED_EXAMPLE_MODEL in ids or not ids:
        return PREFERRED_EXAMPLE_MODEL
    return ids[0]


def per_1k(price: Any) -> str:
    """A per-token USD price as dollars per 1K tokens: 0.00003 -> "$0.03"."""
    try:
        value = Decimal(str(price)) * 1000
    except (InvalidOperation, ValueError):
        return "—"
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def _model_row(model: dict[str, Any]) -> str:
    model_id = str(model.get("id", ""))
    provider = str(model.get("provider") or model.get("owned_by") or "")
    pricing = model.get("pricing") or {}
    caps = [str(c) for c in model.get("capabilities") or []]
    cap_html = '<span class="sep">, </span>'.join(
        f'<span class="chip">{escape(c)}</span>' for c in caps
    )
    return (
        f'<tr data-model-id="{escape(model_id)}" data-provider="{escape(provider)}"'
        f' data-input-price="{escape(str(pricing.get("input", "")))}"'
        f' data-output-price="{escape(str(pricing.get("output", "")))}">'
        f'<th scope="row"><code>{escape(model_id)}</code></th>'
        f'<td data-label="Provider">{escape(PROVIDER_NAMES.get(provider, provider))}</td>'
        f'<td data-label="Capabilities"><span class="chips">{cap_html or "—"}</span></td>'
        f'<td class="num" data-label="Input $/1K tokens">'
        f"{escape(per_1k(pricing.get('input', 0)))}</td>"
        f'<td class="num" data-label="Output $/1K tokens">'
        f"{escape(per_1k(pricing.get('output', 0)))}</td>"
        "</tr>"
    )


def _model_options(models: list[dict[str, Any]]) -> str:
    """``<option>``s for the playground before a key is given: chat models, local ones first."""
    chat = [m for m in models if "chat" in (m.get("capabilities") or ["chat"])] or models
    default = next((m for m in chat if m.get("provider") == "local"), chat[0] if chat else None)
    options = []
    for m in chat:
        model_id = escape(str(m.get("id", "")))
        selected = " selected" if m is default else ""
        options.append(f'<option value="{model_id}"{selected}>{model_id}</option>')
    return "".join(options)


_TYPE_NAMES = {"integer": "integer", "number": "number", "string": "string",
               "boolean": "boolean", "array": "array", "object": "object"}


def _alternatives(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a property allows, ``null`` left out (null is the same as absent)."""
    if "anyOf" not in prop:
        return [prop]
    return [s for alt in prop["anyOf"] if alt.get("type") != "null" for s in _alternatives(alt)]


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _type_label(prop: dict[str, Any]) -> str:
    names = []
    for alt in _alternatives(prop):
        names.append("string" if "enum" in alt else "object" if "$ref" in alt
                     else _TYPE_NAMES.get(alt.get("type"), "any"))
    return " or ".join(dict.fromkeys(names))


def _limits(prop: dict[str, Any]) -> list[str]:
    """The property's constraints, in words."""
    out = []
    for alt in _alternatives(prop):
        if "minimum" in alt or "maximum" in alt:
            out.append(f"{_number(alt['minimum'])} to {_number(alt['maximum'])}"
                       if "minimum" in alt and "maximum" in alt
                       else f"at least {_number(alt['minimum'])}" if "minimum" in alt
                       else f"at most {_number(alt['maximum'])}")
        if "enum" in alt:
            out.append("one of " + ", ".join(str(v) for v in alt["enum"]))
        if "maxItems" in alt:
            out.append(f"at most {alt['maxItems']} items")
        if "minItems" in alt:
            out.append(f"at least {alt['minItems']} item{'s' * (alt['minItems'] > 1)}")
    return out


def parameter_rows(schema: dict[str, Any]) -> str:
    """``<tr>``s for a body's JSON Schema: required parameters first, then the others in the
    order the type declares them."""
    required = schema.get("required", [])
    names = [*required, *(n for n in schema["properties"] if n not in required)]
    rows = []
    for name in names:
        prop = schema["properties"][name]
        text = "; ".join(filter(None, [prop.get("description", ""), *_limits(prop)]))
        if prop.get("default") is not None:
            text += f" (default {str(prop['default']).lower()})"
        req = '<span class="req">Yes</span>' if name in required else "No"
        rows.append(f'<tr data-param="{escape(name)}"><td><code>{escape(name)}</code></td>'
                    f"<td>{escape(_type_label(prop))}</td><td>{req}</td>"
                    f"<td>{escape(text) or '—'}</td></tr>")
    return "".join(rows)


CHAT_PARAMETER_ROWS = parameter_rows(SCHEMAS["ChatCompletionRequest"])
