"""Request validation: the seed's parameter table plus OpenAI's rules for every other field.

Every failure is a 400 that names the offending parameter, in OpenAI's error shape.
"""

from __future__ import annotations

import re
from typing import Any

from spaceai.fields import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    Bool,
    Int,
    InvalidField,
    Num,
    OneOf,
    Rule,
    Str,
    read,
)
from spaceai.fields import type_name as _type_name
from spaceai.types import ChatRequest, GatewayError

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}

_OBJECT = OneOf((dict,), "an object")
_ARRAY = OneOf((list,), "an array")

# sampling and output parameters shared by chat and legacy completions (stream apart)
SAMPLING: dict[str, Rule] = {
    "temperature": Num(0, 2),
    "top_p": Num(0, 1),
    "presence_penalty": Num(-2, 2),
    "frequency_penalty": Num(-2, 2),
    "max_tokens": Int(1, INT32_MAX),
    "max_completion_tokens": Int(1, INT32_MAX),
    "n": Int(1, 128),
    "seed": Int(INT64_MIN, INT64_MAX),
    "user": Str(),
}

_STREAM: dict[str, Rule] = {"stream": Bool()}

# OpenAI chat parameters passed through after a check
PASSTHROUGH: dict[str, Rule] = {
    "logit_bias": _OBJECT,
    "logprobs": Bool(),
    "top_logprobs": Int(0, 20),
    "parallel_tool_calls": Bool(),
    "store": Bool(),
    "metadata": _OBJECT,
    "reasoning_effort": Str(),
    "modalities": _ARRAY,
    "audio": _OBJECT,
    "prediction": _OBJECT,
    "service_tier": Str(),
    "verbosity": Str(),
    "web_search_options": _OBJECT,
    "prompt_cache_key": Str(),
    "safety_identifier": Str(),
    "functions": _ARRAY,
    "function_call": OneOf((str, dict), "a string or an object"),
    "top_k": Int(0, INT32_MAX),
}

# the legacy completion's own parameters
COMPLETION_EXTRA: dict[str, Rule] = {
    "echo": Bool(),
    "suffix": Str(),
    "best_of": Int(1, 20),
    "logprobs": Int(0, 5),
    "logit_bias": _OBJECT,
}


def bad(message: str, param: str | None, code: str = "invalid_value") -> GatewayError:
    return InvalidField(message, param, code)


def _stop(body: dict) -> list[str] | None:
    v = body.get("stop")
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        if len(v) > 4:
            raise bad("Invalid 'stop': array too long. Expected an array with maximum length 4, "
                      f"but got an array with length {len(v)} instead.", "stop", "array_above_max_length")
        return list(v) or None
    raise bad("Invalid type for 'stop': expected a string or an array of strings.", "stop",
              "invalid_type")


def _content(msg: dict, i: int, role: str) -> None:
    param = f"messages[{i}].content"
    content = msg.get("content")
    if content is None:
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call")):
            return
        raise bad(f"Invalid value for '{param}': expected a string or an array of content parts, "
                  "got null.", param, "invalid_type" if "content" in msg else "missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise bad(f"Invalid type for '{param}': expected a string or an array of content parts, "
                  f"but got {_type_name(content)}.", param, "invalid_type")
    for j, part in enumerate(content):
        pparam = f"{param}[{j}]"
        if not isinstance(part, dict) or part.get("type") not in _PART_TYPES:
            raise bad(f"Invalid content part at '{pparam}': expected an object with 'type' one of "
                      f"{', '.join(sorted(_PART_TYPES))}.", pparam)
        ptype = part["type"]
        if ptype == "text" and not isinstance(part.get("text"), str):
            raise bad(f"Missing required parameter: '{pparam}.text'.", f"{pparam}.text",
                      "missing_required_parameter")
        if ptype == "image_url":
            if role != "user":
                raise bad(f"Invalid '{pparam}': image content is only allowed in user messages.",
                          pparam)
            url = part.get("image_url")
            if not isinstance(url, dict) or not isinstance(url.get("url"), str):
                raise bad(f"Missing required parameter: '{pparam}.image_url.url'.",
                          f"{pparam}.image_url.url", "missing_required_parameter")


def _tool_calls(calls: Any, i: int, role: str) -> None:
    param = f"messages[{i}].tool_calls"
    if role != "assistant":
        raise bad(f"Invalid parameter: '{param}' is only allowed on assistant messages, not on "
                  f"'{role}' messages.", param)
    if not isinstance(calls, list):
        raise bad(f"Invalid type for '{param}': expected an array.", param, "invalid_type")
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(fn, dict) and isinstance(fn.get("name"), str)
                and isinstance(fn.get("arguments", ""), str) and isinstance(call.get("id"), str)):
            raise bad(f"Invalid '{param}[{j}]': expected an object with 'id', 'type' and "
                      "'function' {name, arguments} (arguments a JSON string).", f"{param}[{j}]")


def _messages(body: dict) -> list[dict]:
    if "messages" not in body or body["messages"] is None:
        raise bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise bad(f"Invalid type for 'messages': expected an array, but got {_type_name(messages)}.",
                  "messages", "invalid_type")
    if not messages:
        raise bad("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                  "but got an empty array instead.", "messages", "empty_array")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad(f"Invalid type for 'messages[{i}]': expected an object, but got "
                      f"{_type_name(msg)}.", f"messages[{i}]", "invalid_type")
        role = msg.get("role")
        if role is None:
            raise bad(f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role",
                      "missing_required_parameter")
        if role not in ROLES:
            raise bad(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                      "'user', 'tool', 'function' and 'developer'.", f"messages[{i}].role")
        _content(msg, i, role)
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise bad(f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                      f"messages[{i}].tool_call_id", "missing_required_parameter")
        if msg.get("tool_calls") is not None:
            _tool_calls(msg["tool_calls"], i, role)
        if "name" in msg and msg["name"] is not None and not isinstance(msg["name"], str):
            raise bad(f"Invalid type for 'messages[{i}].name': expected a string.",
                      f"messages[{i}].name", "invalid_type")
    return messages


def _tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    if len(tools) > 128:
        raise bad("Invalid 'tools': array too long. Expected at most 128 tools.", "tools",
                  "array_above_max_length")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad(f"Invalid value for '{param}.type': expected 'function'.", f"{param}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise bad(f"Missing required parameter: '{param}.function'.", f"{param}.function",
                      "missing_required_parameter")
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise bad(f"Invalid '{param}.function.name': string does not match pattern. Expected "
                      "a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                      f"{param}.function.name")
        if "parameters" in fn and fn["parameters"] is not None and not isinstance(
            fn["parameters"], dict
        ):
            raise bad(f"Invalid type for '{param}.function.parameters': expected an object.",
                      f"{param}.function.parameters", "invalid_type")


def _tool_choice(body: dict) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise bad(f"Invalid value for 'tool_choice': '{choice}'. Supported values are: 'none', "
                      "'auto' and 'required'.", "tool_choice")
        if choice != "none" and not body.get("tools"):
            raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                      "are specified.", "tool_choice")
        return
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad("Invalid 'tool_choice': expected 'none', 'auto', 'required' or "
                  "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")
    names = {t["function"]["name"] for t in body.get("tools") or []}
    if fn["name"] not in names:
        raise bad(f"Invalid 'tool_choice': function '{fn['name']}' is not among the 'tools'.",
                  "tool_choice")


def _response_format(body: dict) -> None:
    rf = body.get("response_format")
    if rf is None:
        return
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise bad("Invalid 'response_format.type': expected one of 'text', 'json_object', "
                  "'json_schema'.", "response_format.type")
    if rf["type"] == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise bad("Missing required parameter: 'response_format.json_schema.name'.",
                      "response_format.json_schema.name", "missing_required_parameter")


def _common(body: dict, params: dict[str, Any]) -> tuple[bool, bool]:
    """Sampling and streaming parameters shared by chat and legacy completions."""
    params.update(read(body, SAMPLING))  # no temperature: the model's default (fit.py)
    stop = _stop(body)
    if stop:
        params["stop"] = stop
    stream = bool(read(body, _STREAM).get("stream"))
    include_usage = False
    so = body.get("stream_options")
    if so is not None:
        if not stream:
            raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                      "stream_options")
        if not isinstance(so, dict):
            raise bad("Invalid type for 'stream_options': expected an object.", "stream_options",
                      "invalid_type")
        iu = so.get("include_usage")
        if iu is not None and not isinstance(iu, bool):
            raise bad("Invalid type for 'stream_options.include_usage': expected a boolean.",
                      "stream_options.include_usage", "invalid_type")
        include_usage = bool(iu)
    return stream, include_usage


def _model(body: Any) -> str:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", None, "invalid_type")
    model = body.get("model")
    if model is None:
        raise bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad("Invalid type for 'model': expected a non-empty string.", "model", "invalid_type")
    return model


_CHAT_KNOWN = {
    "model", "messages", "temperature", "top_p", "n", "stream", "stream_options", "stop",
    "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty", "seed", "user",
    "tools", "tool_choice", "response_format",
} | set(PASSTHROUGH)


def parse_chat(body: Any) -> ChatRequest:
    """A validated ChatRequest from a decoded /v1/chat/completions body.

    Parameters it does not know are kept as they came (named in ``unknown``): each model's
    provider forwards, drops or refuses them (``spaceai/providers/fit.py``).
    """
    model = _model(body)
    messages = _messages(body)
    params: dict[str, Any] = {
        name: value for name, value in body.items() if name not in _CHAT_KNOWN
        and value is not None
    }
    unknown = tuple(params)
    stream, include_usage = _common(body, params)
    _tools(body)
    _tool_choice(body)
    _response_format(body)
    for name in ("tools", "tool_choice", "response_format"):
        if body.get(name) is not None:
            params[name] = body[name]
    params.update(read(body, PASSTHROUGH))
    return ChatRequest(model=model, messages=messages, params=params, stream=stream,
                       include_usage=include_usage, unknown=unknown)


_COMPLETION_KNOWN = {
    "model", "prompt", "temperature", "top_p", "n", "stream", "stream_options", "stop",
    "max_tokens", "presence_penalty", "frequency_penalty", "seed", "user", "echo", "suffix",
    "best_of", "logprobs", "logit_bias",
}


def parse_completion(body: Any) -> ChatRequest:
    """A validated legacy text-completion request (``prompt`` set, no messages).

    Unknown parameters are kept, as for chat: each model forwards, drops or refuses them.
    """
    model = _model(body)
    unknown_params = {name: value for name, value in body.items()
                      if name not in _COMPLETION_KNOWN and value is not None}
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("Invalid type for 'prompt': expected a string (arrays of several prompts and "
                  "token arrays are not supported).", "prompt", "invalid_type")
    params: dict[str, Any] = dict(unknown_params)
    stream, include_usage = _common(body, params)
    if "max_tokens" not in params:
        params["max_tokens"] = 16  # OpenAI's default for legacy completions
    params.update(read(body, COMPLETION_EXTRA))
    return ChatRequest(model=model, messages=[], params=params, stream=stream,
                       include_usage=include_usage, prompt=prompt,
                       unknown=tuple(unknown_params))
