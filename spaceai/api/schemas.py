"""Every request body the gateway takes, declared once as types.

Validation converts a decoded body to its type (:func:`spaceai.fields.convert`, which words a
refusal as OpenAI does), ``/openapi.json`` describes the bodies with the JSON Schema generated
from these types (:data:`SCHEMAS`), and the documentation page's parameter table is rendered
from that schema: one declaration, so the three cannot disagree (``tests/test_openapi_types.py``).

A field that may be ``null`` treats null as absent, as OpenAI does. The class docstrings and
``Meta(description=...)`` texts are what API users read in the schema and on the page.
Chat and legacy-completion bodies accept fields they do not declare (forwarded to the upstream,
see ``ChatRequest.unknown``); the Responses and key-update bodies refuse them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from spaceai.catalog import DEFAULT_TEMPERATURE
from spaceai.fields import INT32_MAX, INT64_MAX, INT64_MIN, MAX_BUDGET_USD, TEXT_PATTERN

# -- constrained scalars ---------------------------------------------------------------------

PositiveInt32 = Annotated[int, Meta(ge=1, le=INT32_MAX)]
Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
Text200 = Annotated[str, Meta(max_length=200, pattern=TEXT_PATTERN)]
ModelId = Annotated[str, Meta(min_length=1, description="ID of the model to use (GET /v1/models)")]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
UnitInterval = Annotated[float, Meta(ge=0, le=1)]
TOOL_NAME = "^[a-zA-Z0-9_-]{1,64}$"
JsonObject = dict[str, Any]
HINT = "passed to OpenAI upstreams; changes no answer elsewhere"
OPENAI_ONLY = "OpenAI upstreams only: other models refuse it with a 400, or drop it"


class _Body(Struct, gc=False):
    """A node of a decoded body: it forms no reference cycles, so the GC need not track it."""


# -- chat messages ---------------------------------------------------------------------------


class TextPart(_Body, tag="text"):
    text: str


class ImageUrl(_Body):
    url: str
    detail: str | None = None


class ImagePart(_Body, tag="image_url"):
    image_url: ImageUrl


class AudioPart(_Body, tag="input_audio"):
    input_audio: JsonObject


class FilePart(_Body, tag="file"):
    file: JsonObject


class RefusalPart(_Body, tag="refusal"):
    refusal: str


# images only in user messages: OpenAI refuses them elsewhere
UserContent = str | list[TextPart | ImagePart | AudioPart | FilePart | RefusalPart]
Content = str | list[TextPart | AudioPart | FilePart | RefusalPart]


class FunctionCall(_Body):
    name: str
    arguments: Annotated[str, Meta(description="the arguments as a JSON text")] = ""


class ToolCall(_Body):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class _Message(_Body, tag_field="role", kw_only=True):
    name: str | None = None


class SystemMessage(_Message, tag="system"):
    content: Content


class DeveloperMessage(_Message, tag="developer"):
    content: Content


class UserMessage(_Message, tag="user"):
    content: UserContent


class AssistantMessage(_Message, tag="assistant"):
    """``content`` may be null when the message calls tools (``tool_calls``)."""

    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: JsonObject | None = None
    refusal: str | None = None


class ToolMessage(_Message, tag="tool"):
    content: Content
    tool_call_id: str


class FunctionMessage(_Message, tag="function"):
    content: Content | None


ChatMessage = (SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage
               | FunctionMessage)


# -- tools and formats -----------------------------------------------------------------------


class FunctionDefinition(_Body):
    name: Annotated[str, Meta(pattern=TOOL_NAME)]
    description: str | None = None
    parameters: Annotated[JsonObject | None, Meta(description="a JSON Schema")] = None
    strict: bool | None = None


class FunctionTool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class TextFormat(_Body, tag="text"):
    pass


class JsonObjectFormat(_Body, tag="json_object"):
    pass


class JsonSchemaSpec(_Body):
    name: str
    description: str | None = None
    schema: JsonObject | None = None
    strict: bool | None = None


class JsonSchemaFormat(_Body, tag="json_schema"):
    json_schema: JsonSchemaSpec


class StreamOptions(_Body):
    include_usage: Annotated[bool | None, Meta(
        description="a last chunk with usage (and its cost)")] = None


# -- chat and legacy completions -------------------------------------------------------------


class _Sampling(_Body, kw_only=True):
    """Sampling and output parameters shared by chat and legacy completions."""

    top_p: Annotated[UnitInterval | None, Meta(
        description="nucleus sampling: only the tokens in the top top_p probability mass "
                    "(default 1)")] = None
    n: Annotated[Annotated[int, Meta(ge=1, le=128)] | None, Meta(
        description="how many choices to generate (default 1)")] = None
    stream: Annotated[bool | None, Meta(
        description="stream partial results as server-sent events")] = False
    stream_options: Annotated[StreamOptions | None, Meta(
        description="with a stream: include_usage adds a last chunk with usage (and its "
                    "cost)")] = None
    stop: Annotated[str | Annotated[list[str], Meta(max_length=4)] | None, Meta(
        description="sequences where generation stops")] = None
    presence_penalty: Annotated[Penalty | None, Meta(
        description="positive values favour new topics (default 0)")] = None
    frequency_penalty: Annotated[Penalty | None, Meta(
        description="positive values discourage repetition (default 0)")] = None
    seed: Annotated[Int64 | None, Meta(description="best-effort deterministic sampling")] = None
    user: Annotated[str | None, Meta(
        description="an identifier of your end user, recorded with the usage")] = None
    logit_bias: Annotated[JsonObject | None, Meta(
        description="token id to a bias from -100 to 100")] = None


class ChatCompletionRequest(_Sampling):
    """Parameters not listed here are forwarded unchanged to OpenAI-compatible upstreams (a 400
    naming them on a model with strict_params); Anthropic and local models refuse what they
    cannot honour with a 400 naming it, or drop it (drop_unsupported) and name it in
    x-spaceai-dropped."""

    model: ModelId
    messages: Annotated[list[ChatMessage], Meta(min_length=1, description=(
        "the conversation: message objects with a role (system, developer, user, assistant, "
        "tool) and content"))]
    temperature: Annotated[Annotated[float, Meta(ge=0, le=2)] | None | UnsetType, Meta(
        description="sampling temperature (none is sent to a reasoning model unless given)",
        extra_json_schema={"default": DEFAULT_TEMPERATURE})] = UNSET
    max_tokens: Annotated[PositiveInt32 | None, Meta(
        description="the most tokens to generate")] = None
    max_completion_tokens: Annotated[PositiveInt32 | None, Meta(
        description="newer name for max_tokens; either may be sent")] = None
    tools: Annotated[Annotated[list[FunctionTool], Meta(max_length=128)] | None, Meta(
        description="functions the model may call")] = None
    tool_choice: Annotated[Literal["none", "auto", "required"] | NamedToolChoice | None, Meta(
        description="which tool the model calls: a mode, or {type: function, function: {name}}")] = None
    response_format: Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat | None, Meta(
        description="json_schema or json_object on models with the json_schema capability: "
                    "passed to OpenAI, a forced tool on Claude (the answer is the JSON text of "
                    "message.content), grammar-constrained decoding on the local model")] = None
    logprobs: Annotated[bool | None, Meta(
        description="log probabilities of the output tokens")] = None
    top_logprobs: Annotated[Annotated[int, Meta(ge=0, le=20)] | None, Meta(
        description="with logprobs: the most likely tokens at each position")] = None
    parallel_tool_calls: Annotated[bool | None, Meta(
        description="several tool calls in one answer")] = None
    store: Annotated[bool | None, Meta(description=HINT)] = None
    metadata: Annotated[JsonObject | None, Meta(description=HINT)] = None
    reasoning_effort: Annotated[str | None, Meta(
        description="for a reasoning model (accepted and unused by others)")] = None
    modalities: Annotated[list[str] | None, Meta(description=OPENAI_ONLY)] = None
    audio: Annotated[JsonObject | None, Meta(description=OPENAI_ONLY)] = None
    prediction: Annotated[JsonObject | None, Meta(description=OPENAI_ONLY)] = None
    service_tier: Annotated[str | None, Meta(description=HINT)] = None
    verbosity: Annotated[str | None, Meta(
        description="for a reasoning model (accepted and unused by others)")] = None
    web_search_options: Annotated[JsonObject | None, Meta(description=OPENAI_ONLY)] = None
    prompt_cache_key: Annotated[str | None, Meta(description=HINT)] = None
    safety_identifier: Annotated[str | None, Meta(description=HINT)] = None
    functions: Annotated[list[JsonObject] | None, Meta(
        description="the older form of tools")] = None
    function_call: Annotated[str | JsonObject | None, Meta(
        description="the older form of tool_choice")] = None
    top_k: Annotated[Annotated[int, Meta(ge=0, le=INT32_MAX)] | None, Meta(
        description="sample from the k most likely tokens (not an OpenAI parameter)")] = None


class CompletionRequest(_Sampling):
    """A legacy text completion. Parameters not listed here are treated as on chat
    completions: forwarded, refused or dropped by the model."""

    model: ModelId
    prompt: Annotated[str | Annotated[list[str], Meta(min_length=1, max_length=1)], Meta(
        description="the prompt (one; arrays of several prompts and token arrays are not "
                    "supported)")]
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    max_tokens: PositiveInt32 | None = 16
    echo: bool | None = None
    suffix: str | None = None
    best_of: Annotated[int, Meta(ge=1, le=20)] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None


# -- embeddings ------------------------------------------------------------------------------


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on the inputs of one request
NonEmptyText = Annotated[str, Meta(min_length=1)]
TokenId = Annotated[int, Meta(ge=0, le=INT32_MAX)]
TokenIds = Annotated[list[TokenId], Meta(min_length=1)]


class EmbeddingRequest(_Body):
    model: ModelId
    # one array type in a union: the array's items are any of the three kinds, and that an
    # array holds one kind only is checked beside the type (spaceai/api/embeddings.py)
    # (one token array is one input of any length: LangChain sends 8191-token arrays, so the
    # limit on the number of inputs is checked beside the type too)
    input: Annotated[NonEmptyText | Annotated[list[NonEmptyText | TokenId | TokenIds], Meta(
        min_length=1)], Meta(
        description="what to embed: a string, an array of strings, an array of token ids, or "
                    "an array of token-id arrays (an array holds one of these kinds; no string "
                    "or array empty; at most 2048 inputs). Token ids are OpenAI cl100k_base ids (the local model "
                    "decodes them and embeds the text, or answers 400 saying to send text)")]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Meta(ge=1, le=65_536)] | None = None
    user: str | None = None


# -- Anthropic Messages ----------------------------------------------------------------------


class AnthropicMessage(_Body):
    """Content blocks are checked where they are translated: a Claude model takes blocks no
    other model can (documents, server tool results...)."""

    role: Literal["user", "assistant", "system"]
    content: str | list[JsonObject]


class SystemBlock(_Body):
    type: Literal["text"]
    text: str
    cache_control: JsonObject | None = None


class AnthropicTool(_Body):
    name: Annotated[str, Meta(min_length=1)]
    description: str | None = None
    input_schema: JsonObject | None = None
    type: Annotated[str | None, Meta(description="custom (the default) or a server tool, "
                                                 "which only a Claude model runs")] = None
    defer_loading: bool | None = None


class _AnthropicToolChoice(_Body, tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAuto(_AnthropicToolChoice, tag="auto"):
    pass


class ToolChoiceAny(_AnthropicToolChoice, tag="any"):
    pass


class ToolChoiceTool(_AnthropicToolChoice, tag="tool"):
    name: Annotated[str, Meta(min_length=1)]


class ToolChoiceNone(_AnthropicToolChoice, tag="none"):
    pass


class ThinkingEnabled(_Body, tag="enabled"):
    budget_tokens: Annotated[PositiveInt32, Meta(description="below max_tokens")]


class ThinkingDisabled(_Body, tag="disabled"):
    pass


class ThinkingAdaptive(_Body, tag="adaptive"):
    pass


class ContextManagement(_Body):
    edits: list[JsonObject] | None = None


class JsonSchemaOutput(_Body):
    type: Literal["json_schema"]
    schema: JsonObject


class OutputConfig(_Body):
    effort: str | None = None
    format: JsonSchemaOutput | None = None


class MessagesRequest(_Body):
    """Anthropic's Messages API. Fields only Claude can honour (mcp_servers, container, server
    tools, some content blocks) are refused with a 400 naming them on other models."""

    model: ModelId
    messages: Annotated[list[AnthropicMessage], Meta(min_length=1)]
    max_tokens: PositiveInt32
    system: str | list[SystemBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: Annotated[UnitInterval | None, Meta(description="default 1")] = None
    top_p: UnitInterval | None = None
    top_k: Annotated[int, Meta(ge=0, le=INT32_MAX)] | None = None
    stream: bool | None = False
    metadata: Annotated[JsonObject | None, Meta(
        description="user_id: sent to OpenAI upstreams as user (a long one as its SHA-256)")] = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone | None = None
    thinking: ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | None = None
    context_management: ContextManagement | None = None
    output_config: OutputConfig | None = None
    output_format: JsonSchemaOutput | None = None
    mcp_servers: list[JsonObject] | None = None
    container: str | JsonObject | None = None


# -- OpenAI Responses ------------------------------------------------------------------------
# Input items and their content parts are tagged by ``type``; a field OpenAI adds to an item
# (``annotations``, ``logprobs``...) is ignored, as item shapes grow.


class InputTextPart(_Body, tag="input_text"):
    text: str


class OutputTextPart(_Body, tag="output_text"):
    """An assistant's text, as a response's output message holds it."""

    text: str


class InputImagePart(_Body, tag="input_image"):
    image_url: Annotated[str | None, Meta(
        description="an http(s) or base64 data URL (required: file_id images are a 400)")] = None
    file_id: Annotated[str | None, Meta(description="not supported: a 400")] = None
    detail: str | None = None


class InputFilePart(_Body, tag="input_file"):
    """Not supported: a 400 naming the part."""

    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


InputFileData = InputTextPart | InputImagePart | InputFilePart
ItemContent = str | list[str | InputTextPart | OutputTextPart | TextPart | RefusalPart
                         | InputImagePart | InputFilePart]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Item(_Body, kw_only=True):
    id: Annotated[str | None, Meta(description="kept; one is made up when left out")] = None
    status: ItemStatus | None = None


class MessageItem(_Item, tag="message"):
    """A message. ``type`` may be left out when ``role`` is given (OpenAI's EasyInputMessage)."""

    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[ItemContent, Meta(
        description="a text, or content parts: input_text, output_text, refusal, input_image "
                    "(image_url; file_id images and input_file parts are a 400)")]


class FunctionCallItem(_Item, tag="function_call"):
    """A call the model made to one of the client's functions: joins the assistant turn
    before it as a tool call."""

    call_id: str
    name: str
    arguments: Annotated[str, Meta(description="the arguments as a JSON text")]


class FunctionCallOutputItem(_Item, tag="function_call_output"):
    """The client's result for ``call_id``: a tool message to the model."""

    call_id: str
    output: Annotated[str | list[InputFileData], Meta(
        description="a text, or content parts (their texts are what the model reads)")]


class SummaryTextPart(_Body, tag="summary_text"):
    text: str


class ReasoningItem(_Item, tag="reasoning"):
    """A model's reasoning from an earlier response: kept in the conversation as sent (and
    sent to native Responses upstreams); chat upstreams have no field for it."""

    summary: list[SummaryTextPart] | None = None
    encrypted_content: str | None = None
    content: list[JsonObject] | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem
ResponsesInput = Annotated[str | list[InputItem], Meta(
    description="a text (one user message), or input items: message, function_call, "
                "function_call_output or reasoning; other item types are a 400")]


class ResponsesText(_Body):
    format: TextFormat | JsonObjectFormat | JsonSchemaResponseFormat | None = None
    verbosity: str | None = None


class JsonSchemaResponseFormat(_Body, tag="json_schema"):
    name: str
    schema: JsonObject
    description: str | None = None
    strict: bool | None = None


class Reasoning(_Body):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(_Body, forbid_unknown_fields=True):
    """OpenAI's Responses API; a field not listed here is a 400 naming it."""

    model: ModelId
    input: ResponsesInput
    instructions: str | None = None
    max_output_tokens: PositiveInt32 | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: UnitInterval | None = None
    tools: Annotated[list[JsonObject] | None, Meta(
        description="function tools; hosted tools (web_search, ...) are dropped and named in "
                    "x-spaceai-dropped")] = None
    tool_choice: Literal["none", "auto", "required"] | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    text: ResponsesText | None = None
    reasoning: Reasoning | None = None
    metadata: JsonObject | None = None
    user: str | None = None
    store: bool | None = True
    previous_response_id: str | None = None
    stream: bool | None = False
    include: list[str] | None = None
    truncation: str | None = None
    max_tool_calls: Annotated[int, Meta(ge=0, le=INT32_MAX)] | None = None
    stream_options: JsonObject | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    prompt_cache_retention: str | None = None
    context_management: list[JsonObject] | JsonObject | None = None
    client_metadata: JsonObject | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    background: Annotated[bool | None, Meta(description="not supported: true is a 400")] = None
    conversation: Annotated[str | JsonObject | None, Meta(description="not supported")] = None
    prompt: Annotated[JsonObject | None, Meta(description="not supported")] = None


# -- admin -----------------------------------------------------------------------------------

Budget = Annotated[float, Meta(ge=0, le=MAX_BUDGET_USD, description="USD")]
Expiry = Annotated[str, Meta(max_length=100, description="ISO 8601 or a duration like 30d")]
LOG_BODIES = ("store this key's request and response bodies (true), never (false), or as "
              "SPACEAI_LOG_BODIES says (null)")


class KeyCreate(_Body):
    """A new key's limits: shared by POST /admin/keys and `spaceai keys create`."""

    name: Text200 | None = None
    budget: Budget | None = None
    budget_period: Literal["monthly"] | None = None
    rpm: PositiveInt32 | None = None
    tpm: PositiveInt32 | None = None
    models: list[Text200] | None = None
    expires: Expiry | None = None
    expires_at: Expiry | None = None
    log_bodies: Annotated[bool | None, Meta(description=LOG_BODIES)] = None


class KeyUpdate(_Body, forbid_unknown_fields=True):
    """The fields to change; null removes a limit."""

    name: Text200 | None | UnsetType = UNSET
    models: list[Text200] | None | UnsetType = UNSET
    budget: Budget | None | UnsetType = UNSET
    rpm: PositiveInt32 | None | UnsetType = UNSET
    tpm: PositiveInt32 | None | UnsetType = UNSET
    expires: Expiry | None | UnsetType = UNSET
    expires_at: Annotated[Expiry | None | UnsetType, Meta(description="null: never")] = UNSET
    alert_thresholds: Annotated[list[Annotated[int, Meta(ge=1, le=1000)]] | str | None
                                | UnsetType, Meta(
        description="budget alert thresholds in percent (or \"50,80,100\"); null: the "
                    "gateway's default (SPACEAI_ALERT_THRESHOLDS)")] = UNSET
    log_bodies: Annotated[bool | None | UnsetType, Meta(description=LOG_BODIES)] = UNSET


class UsageQuery(_Body):
    """GET /admin/usage's query string."""

    key: Text200 | None = None
    model: Text200 | None = None
    since: Annotated[str, Meta(max_length=100)] | None = None
    until: Annotated[str, Meta(max_length=100)] | None = None
    limit: PositiveInt32 = 100
    offset: Annotated[int, Meta(ge=0, le=INT64_MAX)] = 0


# -- the description -------------------------------------------------------------------------

BODIES: tuple[type[Struct], ...] = (
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, MessagesRequest,
    ResponsesRequest, KeyCreate, KeyUpdate)


def field_names(body: type[Struct]) -> frozenset[str]:
    """The names a body type declares, as they appear in JSON."""
    return frozenset(f.encode_name for f in msgspec.structs.fields(body))


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        BODIES, ref_template="#/components/schemas/{name}")
    for schema in components.values():  # a docstring's line breaks are not the reader's
        if "description" in schema:
            schema["description"] = " ".join(schema["description"].split())
    for body in BODIES:  # said outright: a body takes the fields it does not declare
        if not body.__struct_config__.forbid_unknown_fields:
            components[body.__name__]["additionalProperties"] = True
    return components


# JSON Schemas of every body and the shapes inside them, by name, for /openapi.json
SCHEMAS: dict[str, Any] = _schemas()


def query_parameters(query: type[Struct]) -> list[dict[str, Any]]:
    """OpenAPI query parameters from a query type's fields. ``X | None`` is described as X:
    a query parameter is left out, never null."""
    schema = msgspec.json.schema(query)["$defs"][query.__name__]
    out = []
    for name, prop in schema["properties"].items():
        if "anyOf" in prop:
            value = next(s for s in prop.pop("anyOf") if s != {"type": "null"})
            prop = {**value, **{k: v for k, v in prop.items() if v is not None}}
        out.append({"name": name, "in": "query", "required": False, "schema": prop})
    return out
