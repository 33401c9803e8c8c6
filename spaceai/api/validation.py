"""Chat and legacy completion bodies -> the gateway's one :class:`ChatRequest`.

Their shape (fields, ranges, enums, messages and tools) is declared as types in
:mod:`spaceai.api.schemas` and checked by converting the body to them; here are the rules a
type cannot say, each a 400 in OpenAI's words naming the parameter: which messages may call
tools, a ``tool_choice`` that names one of the ``tools``, ``stream_options`` only on a stream.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import fields

from spaceai.api.schemas import ChatCompletionRequest, CompletionRequest, field_names
from spaceai.fields import InvalidField, convert
from spaceai.types import ChatRequest

_CHAT_FIELDS = field_names(ChatCompletionRequest)
_COMPLETION_FIELDS = field_names(CompletionRequest)
# fields a ChatRequest holds apart from its params
_NOT_PARAMS = frozenset({"model", "messages", "prompt", "stream", "stream_options"})
_COMPLETION_MAX_TOKENS = next(f.default for f in fields(CompletionRequest)
                              if f.name == "max_tokens")


def bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidField:
    return InvalidField(message, param, code)


def _params(body: dict[str, Any], known: frozenset[str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The parameters the client sent (null ones are absent; ``stop`` always a list), as
    :func:`convert` left them, and the names of those the type does not declare."""
    params = {name: value for name, value in body.items()
              if value is not None and name not in _NOT_PARAMS}
    unknown = tuple(name for name in params if name not in known)
    stop = params.get("stop")
    if isinstance(stop, str):
        params["stop"] = [stop]
    elif stop == []:
        del params["stop"]
    return params, unknown


def _include_usage(typed: ChatCompletionRequest | CompletionRequest) -> bool:
    if typed.stream_options is None:
        return False
    if not typed.stream:
        raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                  "stream_options")
    return bool(typed.stream_options.include_usage)


def _check_messages(messages: list[dict[str, Any]]) -> None:
    """Tool calls only on assistant messages, which need content unless they call a tool."""
    for i, msg in enumerate(messages):
        role = msg["role"]
        if role != "assistant":
            if msg.get("tool_calls") is not None:
                param = f"messages[{i}].tool_calls"
                raise bad(f"Invalid parameter: '{param}' is only allowed on assistant messages, "
                          f"not on '{role}' messages.", param)
        elif msg.get("content") is None and not (msg.get("tool_calls")
                                                 or msg.get("function_call")):
            param = f"messages[{i}].content"
            raise bad(f"Invalid value for '{param}': expected a string or an array of content "
                      "parts, got null.", param,
                      "invalid_type" if "content" in msg else "missing_required_parameter")


def _check_tool_choice(typed: ChatCompletionRequest) -> None:
    choice = typed.tool_choice
    if isinstance(choice, str):
        if choice != "none" and not typed.tools:
            raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                      "'tools' are specified.", "tool_choice")
    elif choice is not None and choice.function.name not in {
            t.function.name for t in typed.tools or ()}:
        raise bad(f"Invalid 'tool_choice': function '{choice.function.name}' is not among the "
                  "'tools'.", "tool_choice")


def parse_chat(body: Any) -> ChatRequest:
    """A validated ChatRequest from a decoded /v1/chat/completions body.

    Parameters it does not know are kept as they came (named in ``unknown``): each model's
    provider forwards, drops or refuses them (``spaceai/providers/fit.py``).
    """
    typed = convert(body, ChatCompletionRequest)
    messages = body["messages"]
    _check_messages(messages)
    _check_tool_choice(typed)
    params, unknown = _params(body, _CHAT_FIELDS)
    return ChatRequest(model=typed.model, messages=messages, params=params,
                       stream=bool(typed.stream), include_usage=_include_usage(typed),
                       unknown=unknown)


def parse_completion(body: Any) -> ChatRequest:
    """A validated legacy text-completion request (``prompt`` set, no messages).

    Unknown parameters are kept, as for chat: each model forwards, drops or refuses them.
    """
    typed = convert(body, CompletionRequest)
    params, unknown = _params(body, _COMPLETION_FIELDS)
    params.setdefault("max_tokens", _COMPLETION_MAX_TOKENS)  # OpenAI's default here
    prompt = typed.prompt if isinstance(typed.prompt, str) else typed.prompt[0]
    return ChatRequest(model=typed.model, messages=[], params=params, stream=bool(typed.stream),
                       include_usage=_include_usage(typed), prompt=prompt, unknown=unknown)
