"""The rules every request obeys, whichever front door it came through; a refusal names the field by its path in
the domain request (`max_tokens`, `settings.threads`), which each front door maps to its own field names."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from warpcore.server.core.bounds import (
    MAX_CONTEXT_SIZE,
    MAX_ID_LENGTH,
    MAX_KEEP_ALIVE_SECONDS,
    MAX_PARALLEL,
    MAX_PROMPT_CACHE_TOKENS,
    MAX_SEED,
    MAX_STOP_SEQUENCES,
    MAX_THREADS,
    MAX_TIMEOUT_SECONDS,
    MAX_TOOL_ARGUMENTS_BYTES,
    MAX_TOOLS,
    MIN_CONTEXT_SIZE,
    TOOL_NAME_PATTERN,
)
from warpcore.server.core.domain import (
    ApiSettings,
    BackendKind,
    BackendSettings,
    ChatMessage,
    GenerationParams,
    LoadSpec,
    LocalSettings,
    ResponseFormatKind,
    Role,
    ToolChoiceMode,
)
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.json_schema import parse_json


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidArgumentError(message, field=field)


def check_id(value: str, field: str) -> str:
    """A required id: non-empty, printable, without surrounding spaces, at most MAX_ID_LENGTH characters."""
    require(bool(value), field, f"{field} is required")
    require(len(value) <= MAX_ID_LENGTH, field, f"{field} is longer than {MAX_ID_LENGTH} characters")
    require(
        value.isprintable() and value.strip() == value, field, f"{field} must be printable, without surrounding spaces"
    )
    return value


def check_generation(params: GenerationParams, max_tokens_limit: int) -> None:
    require((params.prompt is not None) != bool(params.messages), "prompt", "set exactly one of prompt and messages")
    require(
        not params.messages or any(message.role is not Role.SYSTEM for message in params.messages),
        "messages",
        "messages must hold at least one user or assistant message",
    )
    require(
        1 <= params.max_tokens <= max_tokens_limit, "max_tokens", f"max_tokens must be between 1 and {max_tokens_limit}"
    )
    if params.temperature is not None:
        require(
            math.isfinite(params.temperature) and 0 <= params.temperature <= 2,
            "temperature",
            "temperature must be between 0 and 2",
        )
    if params.top_p is not None:
        require(0 < params.top_p <= 1, "top_p", "top_p must be greater than 0 and at most 1")
    if params.top_k is not None:
        require(params.top_k >= 1, "top_k", "top_k must be at least 1")
    if params.seed is not None:
        require(0 <= params.seed <= MAX_SEED, "seed", f"seed must be between 0 and {MAX_SEED}")
    require(len(params.stop) <= MAX_STOP_SEQUENCES, "stop", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    require(all(params.stop), "stop", "stop sequences must not be empty")
    tool_names = _check_tools(params)
    _check_conversation(params.messages, tool_names)
    _check_output(params)


_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)


def _check_name(name: str, field: str) -> None:
    require(
        _TOOL_NAME.fullmatch(name) is not None, field, "a name must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -"
    )


def check_tool_count(count: int) -> None:
    """Checked by front doors before they parse the tools' schemas, and again with the rest of the request."""
    require(count <= MAX_TOOLS, "tools", f"at most {MAX_TOOLS} tools")


def _check_tools(params: GenerationParams) -> frozenset[str]:
    """The tools and the tool choice; returns the tools' names."""
    check_tool_count(len(params.tools))
    names: set[str] = set()
    for index, tool in enumerate(params.tools):
        _check_name(tool.name, f"tools[{index}].name")
        require(tool.name not in names, f"tools[{index}].name", f"two tools are named {tool.name!r}")
        names.add(tool.name)
        require(
            tool.parameters.get("type", "object") == "object",
            f"tools[{index}].parameters",
            'a tool\'s parameters must be an object schema ("type": "object")',
        )
    choice = params.tool_choice
    if choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.NAMED):
        require(bool(names), "tool_choice", f"tool choice {choice.mode.value} needs tools")
    if choice.mode is ToolChoiceMode.NAMED:
        require(choice.name in names, "tool_choice.name", f"no tool named {choice.name[:64]!r} in tools")
    else:
        require(not choice.name, "tool_choice.name", "a tool name goes with the named tool choice only")
    return frozenset(names)


def _check_conversation(messages: tuple[ChatMessage, ...], tool_names: frozenset[str]) -> None:
    """Tool calls and results in an order every provider accepts: each call of an assistant turn answered by one
    tool turn right after it (in any order), before any other turn."""
    seen: set[str] = set()
    pending: dict[str, int] = {}  # unanswered call ids -> the index of the assistant turn that made them
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if message.role is Role.TOOL:
            require(bool(message.tool_call_id), f"{field}.tool_call_id", "a tool turn needs the id of its call")
            require(
                message.tool_call_id in pending,
                f"{field}.tool_call_id",
                f"no call with id {message.tool_call_id[:64]!r} waits for a result: a tool turn answers a call of"
                " the assistant turn right before it, once",
            )
            del pending[message.tool_call_id]
        else:
            if pending:
                call_id, turn = next(iter(pending.items()))
                raise InvalidArgumentError(
                    f"call {call_id[:64]!r} of messages[{turn}] has no tool result before this turn", field=field
                )
            require(not message.tool_call_id, f"{field}.tool_call_id", "only a tool turn answers a call")
            require(not message.is_error, f"{field}.is_error", "only a tool turn can be an error")
        if message.role is not Role.ASSISTANT:
            require(not message.tool_calls, f"{field}.tool_calls", "only an assistant turn carries tool calls")
            require(not message.reasoning, f"{field}.reasoning", "only an assistant turn carries reasoning")
        for number, call in enumerate(message.tool_calls):
            call_field = f"{field}.tool_calls[{number}]"
            require(bool(call.id), f"{call_field}.id", "a tool call needs an id")
            require(call.id not in seen, f"{call_field}.id", f"two tool calls have id {call.id[:64]!r}")
            seen.add(call.id)
            pending[call.id] = index
            require(call.name in tool_names, f"{call_field}.name", f"no tool named {call.name[:64]!r} in tools")
            arguments = parse_json(call.arguments, f"{call_field}.arguments", MAX_TOOL_ARGUMENTS_BYTES, "arguments")
            require(isinstance(arguments, dict), f"{call_field}.arguments", "arguments must be a JSON object")
        for number, block in enumerate(message.reasoning):
            if block.redacted:
                require(
                    bool(block.signature) and not block.text,
                    f"{field}.reasoning[{number}]",
                    "a redacted reasoning block carries its data in signature, and no text",
                )
    if pending:
        call_id, turn = next(iter(pending.items()))
        raise InvalidArgumentError(f"call {call_id[:64]!r} of messages[{turn}] has no tool result", field="messages")


def _check_output(params: GenerationParams) -> None:
    """The response format and the reasoning options."""
    response_format = params.response_format
    if response_format is not None:
        if response_format.kind is ResponseFormatKind.JSON_SCHEMA:
            require(response_format.schema is not None, "response_format.schema", "json_schema needs a schema")
            if response_format.name:
                _check_name(response_format.name, "response_format.name")
        else:
            require(response_format.schema is None, "response_format.schema", "a schema goes with json_schema only")
    reasoning = params.reasoning
    if reasoning is not None and reasoning.budget_tokens is not None:
        require(
            1 <= reasoning.budget_tokens < params.max_tokens,
            "reasoning.budget_tokens",
            "budget_tokens must be at least 1 and less than max_tokens",
        )


def check_load(spec: LoadSpec) -> None:
    check_id(spec.name, "model")
    check_id(spec.model_id, "model_id")
    if spec.context_size is not None:
        require(
            MIN_CONTEXT_SIZE <= spec.context_size <= MAX_CONTEXT_SIZE,
            "context_size",
            f"context_size must be between {MIN_CONTEXT_SIZE} and {MAX_CONTEXT_SIZE} tokens",
        )
    if spec.keep_alive is not None:
        require(
            not spec.backend.hosted,
            "keep_alive",
            "keep_alive applies to local models only: a hosted model stays loaded until unloaded",
        )
        require(
            spec.keep_alive == math.inf or 0 <= spec.keep_alive <= MAX_KEEP_ALIVE_SECONDS,
            "keep_alive",
            f"keep_alive must be between 0 and {MAX_KEEP_ALIVE_SECONDS} seconds, or forever",
        )
    check_settings(spec.settings, spec.backend)


def check_settings(settings: BackendSettings | None, backend: BackendKind | None = None) -> None:
    """`settings` in range, and of the kind `backend` (when given) takes."""
    if backend is not None and settings is not None and isinstance(settings, ApiSettings) != backend.hosted:
        wanted, given = ("api", "local") if backend.hosted else ("local", "api")
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{wanted}, not backend_config.{given}", field="settings"
        )
    if isinstance(settings, ApiSettings):
        _check_api(settings)
    elif isinstance(settings, LocalSettings):
        _check_local(settings)


def _check_api(api: ApiSettings) -> None:
    if api.timeout is not None:
        require(
            0 < api.timeout <= MAX_TIMEOUT_SECONDS,
            "settings.timeout",
            f"timeout must be positive and at most {MAX_TIMEOUT_SECONDS} seconds",
        )
    if api.base_url is not None:
        require(_is_http_url(api.base_url), "settings.base_url", "base_url must be an http:// or https:// URL")
    for name, value in (("api_key", api.api_key), ("organization", api.organization)):
        # These travel in HTTP headers; the message must not echo a key.
        if value is not None:
            require(
                bool(value) and value.isascii() and value.isprintable(),
                f"settings.{name}",
                f"{name} must be non-empty printable ASCII",
            )


def _check_local(local: LocalSettings) -> None:
    if local.threads is not None:
        require(1 <= local.threads <= MAX_THREADS, "settings.threads", f"threads must be between 1 and {MAX_THREADS}")
    if local.parallel is not None:
        require(
            1 <= local.parallel <= MAX_PARALLEL, "settings.parallel", f"parallel must be between 1 and {MAX_PARALLEL}"
        )
    if local.prompt_cache_tokens is not None:
        require(
            0 <= local.prompt_cache_tokens <= MAX_PROMPT_CACHE_TOKENS,
            "settings.prompt_cache_tokens",
            f"prompt_cache_tokens must be between 0 (no cache) and {MAX_PROMPT_CACHE_TOKENS}",
        )
    if local.gpu_layers is not None:
        require(local.gpu_layers >= -1, "settings.gpu_layers", "gpu_layers must be -1 (all) or more")


def _is_http_url(value: str) -> bool:
    """An http(s) URL whose host and port an HTTP client can use."""
    if not value.isascii() or not value.isprintable() or " " in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        if parts.hostname:
            parts.hostname.encode("idna")
    except (ValueError, UnicodeError):
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
