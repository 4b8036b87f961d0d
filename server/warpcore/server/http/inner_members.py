"""The members of each object nested in a request (a message, a content part or block, a tool, an option), checked as
the request's own are (members.py): a misspelt member is a 400 naming its path, where it would otherwise be dropped
unseen (a tool result's `is_error`, a block's `cache_control`, a tool's `description`), as Anthropic's API refuses an
extra input anywhere and OpenAI's a misspelt one. Each lists what the vendors' SDKs send there."""

from __future__ import annotations

from warpcore.server.http.members import Members

_MARKS = ("prompt_cache_breakpoint", "cache_control")
"""A chat or Responses content part's cache breakpoint: OpenAI's own, or the gateways' Anthropic-style one."""
_DIRECT = {"type": "direct"}
"""The `caller` of a call the model made itself; any other is a program of a code-execution tool, none of which runs
here."""
CACHE_CONTROL = Members(read=("type", "ttl"))
PROMPT_CACHE_BREAKPOINT = Members(read=("mode", "ttl"))

# Chat Completions.
_NAME = "a participant's name (warpcore has no place to carry it to any backend: say who speaks in the content)"
_SPEAKER = Members(read=("role", "content", "cache_control"), refused=("name",), why={"name": _NAME})
CHAT_MESSAGES = {
    "system": _SPEAKER,
    "developer": _SPEAKER,
    "user": _SPEAKER,
    # `reasoning_content` and `thinking_blocks` are the door's own extension (LiteLLM's), handed back. An answer
    # handed back as the SDK gave it holds `annotations` (what it cited), from `parse()`, `parsed` (its content
    # read as the format's type), and from LiteLLM, `provider_specific_fields` (what its provider said beside the
    # API's fields): its content is what the model reads.
    "assistant": Members(
        read=("role", "content", "refusal", "tool_calls", "reasoning_content", "thinking_blocks", "cache_control"),
        ignored=("annotations", "parsed", "provider_specific_fields"),
        refused=("name", "audio", "function_call"),
        why={
            "name": _NAME,
            "audio": "an earlier audio answer by id (this server keeps none)",
            "function_call": "the deprecated function_call (send tool_calls)",
        },
    ),
    "tool": Members(read=("role", "content", "tool_call_id", "cache_control")),
}
CHAT_PARTS = {
    "text": Members(read=("type", "text", *_MARKS)),
    "refusal": Members(read=("type", "refusal", *_MARKS)),
    "image_url": Members(read=("type", "image_url", *_MARKS)),
    "file": Members(read=("type", "file", *_MARKS)),
}
IMAGE_URL = Members(read=("url", "detail"))
FILE = Members(read=("file_data", "file_id", "filename"))
# The SDK's stream accumulator keeps each streamed call's (and reasoning block's) `index`, which the order of the array
# says again; its `parse()` gives the arguments read as the tool's type beside their text.
TOOL_CALL = Members(read=("id", "type", "function"), ignored=("index",))
CALLED_FUNCTION = Members(read=("name", "arguments"), ignored=("parsed_arguments",))
THINKING_BLOCK = Members(read=("type", "thinking", "signature", "data"), ignored=("index",))
CHAT_TOOL = Members(read=("type", "function", "cache_control"))
FUNCTION = Members(read=("name", "description", "parameters", "strict"))
CHAT_TOOL_CHOICE = Members(read=("type", "function"))
CHOSEN_FUNCTION = Members(read=("name",))
CHAT_ALLOWED_TOOLS = Members(read=("type", "allowed_tools"))
ALLOWED_TOOLS = Members(read=("mode", "tools"))
"""Chat Completions' `tool_choice.allowed_tools`."""
# The obfuscation padding of stream events changes no answer.
STREAM_OPTIONS = Members(read=("include_usage",), ignored=("include_obfuscation",))
FORMAT_SPEC = Members(read=("name", "description", "schema", "strict"))
"""A json_schema format's spec: under `json_schema` in Chat Completions, beside the type in the Responses API."""
SPEC_BESIDE_TYPE = Members(read=("type", *FORMAT_SPEC.read))
FORMAT_TYPE = Members(read=("type",))

# The Responses API. An item's `id` and `status` (and an assistant message's `phase`) describe an earlier output
# handed back, which no backend here has a place for; the text it holds is what the model reads.
_OUTPUT_ITEM = ("id", "status")
RESPONSES_ITEMS = {
    "message": Members(read=("type", "role", "content"), ignored=(*_OUTPUT_ITEM, "phase")),
    "function_call": Members(
        read=("type", "call_id", "name", "arguments"),
        ignored=_OUTPUT_ITEM,
        refused=("namespace",),
        defaults={"caller": _DIRECT, "async": False},
        why={"namespace": "a call of a namespace's tool (rather than a function tool)"},
    ),
    # The call it answers (`call_id`) names its tool.
    "function_call_output": Members(
        read=("type", "call_id", "output"),
        ignored=(*_OUTPUT_ITEM, "name", "namespace"),
        defaults={"caller": _DIRECT},
    ),
    "reasoning": Members(read=("type", "content", "summary", "encrypted_content"), ignored=_OUTPUT_ITEM),
}
REASONING_TEXT = Members(read=("type", "text"))
RESPONSES_PARTS = {
    "input_text": Members(read=("type", "text", *_MARKS)),
    # What an earlier answer's text cited, and its tokens' probabilities: the text is what the model reads.
    "output_text": Members(read=("type", "text", *_MARKS), ignored=("annotations", "logprobs")),
    "refusal": Members(read=("type", "refusal", *_MARKS)),
    "input_image": Members(read=("type", "image_url", "detail", "file_id", *_MARKS)),
    # `detail`, as an image's, has no place in the domain nor meaning to Anthropic or llama.cpp models.
    "input_file": Members(read=("type", "file_data", "file_id", "file_url", "filename", *_MARKS), ignored=("detail",)),
}
# `allowed_callers` may add programs of a code-execution tool, none of which runs here.
RESPONSES_TOOL = Members(
    read=("type", "name", "description", "parameters", "strict"),
    ignored=("allowed_callers",),
    refused=("output_schema",),
    defaults={"defer_loading": False, "async": False},
    why={"output_schema": "a function's output_schema (the model would not see it)"},
)
RESPONSES_TOOL_CHOICE = Members(read=("type", "name"))
RESPONSES_ALLOWED_TOOLS = Members(read=("type", "mode", "tools"))
TEXT = Members(read=("format", "verbosity"))
# `generate_summary` is the deprecated spelling of `summary`, checked only (the reasoning shown is always a summary).
REASONING = Members(
    read=("effort", "summary"), ignored=("generate_summary",), defaults={"context": "auto", "mode": "standard"}
)

# Anthropic Messages.
ANTHROPIC_MESSAGE = Members(read=("role", "content"))
_TOOLSET = {"toolset_name": "a toolset's tool (rather than a custom tool)"}
ANTHROPIC_BLOCKS = {
    # `citations`: the sources an earlier answer cited for this text; the text is what the model reads.
    "text": Members(read=("type", "text", "cache_control"), ignored=("citations",)),
    "image": Members(read=("type", "source", "cache_control"), defaults={"transformations": {}}),
    "document": Members(read=("type", "source", "cache_control", "citations", "context", "title")),
    "tool_use": Members(
        read=("type", "id", "name", "input", "cache_control"),
        refused=tuple(_TOOLSET),
        defaults={"caller": _DIRECT},
        why=_TOOLSET,
    ),
    "tool_result": Members(
        read=("type", "tool_use_id", "content", "is_error", "cache_control"), refused=tuple(_TOOLSET), why=_TOOLSET
    ),
    "thinking": Members(read=("type", "thinking", "signature")),
    "redacted_thinking": Members(read=("type", "data")),
}
SOURCES = {"base64": Members(read=("type", "data", "media_type")), "url": Members(read=("type", "url"))}
CITATIONS = Members(read=("enabled",))
# Who may call it beside the model (programs of a code-execution tool, none of which runs here), and whether its
# input streams as it comes: neither changes an answer.
ANTHROPIC_TOOL = Members(
    read=("type", "name", "description", "input_schema", "strict", "cache_control"),
    ignored=("allowed_callers", "eager_input_streaming"),
    refused=("input_examples",),
    defaults={"defer_loading": False},
    why={"input_examples": "a tool's input_examples (the model would not see them)"},
)
ANTHROPIC_TOOL_CHOICE = Members(read=("type", "name", "disable_parallel_tool_use"))
# The thinking is always shown (summarized, as the API says), never omitted.
THINKING = Members(read=("type", "budget_tokens"), defaults={"display": "summarized"})
OUTPUT_CONFIG = Members(read=("effort", "format"))
OUTPUT_FORMAT = Members(read=("type", "schema"))
METADATA = Members(read=("user_id",))
