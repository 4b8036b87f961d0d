"""The options OpenAI's APIs share, each read at the path its API gives it: a function tool, the tool choice modes,
the response format (Chat Completions' `response_format`, the Responses API's `text.format`), the reasoning effort;
and what Chat Completions shares with the legacy Completions: `stop` and `stream_options`."""

from __future__ import annotations

from warpcore.server.core.bounds import quoted
from warpcore.server.core.tooling import (
    ReasoningEffort,
    ReasoningOptions,
    ResponseFormat,
    ResponseFormatKind,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from warpcore.server.http.fields import Json, at, boolean, mapping, objects, refuse, schema, text, unsupported
from warpcore.server.http.inner_members import (
    ALLOWED_TOOLS,
    CHAT_ALLOWED_TOOLS,
    CHAT_TOOL_CHOICE,
    CHOSEN_FUNCTION,
    FORMAT_SPEC,
    FORMAT_TYPE,
    RESPONSES_ALLOWED_TOOLS,
    RESPONSES_TOOL_CHOICE,
    SPEC_BESIDE_TYPE,
    STREAM_OPTIONS,
)
from warpcore.server.http.members import Members


def stop_sequences(body: Json) -> tuple[str, ...]:
    """`stop`: a string or an array of strings."""
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop  # null is unset
    if not isinstance(stops, list) or not all(isinstance(item, str) for item in stops):
        raise refuse("stop", "must be a string or an array of strings")
    return tuple(stops)


def include_usage(body: Json) -> bool:
    """Whether `stream_options.include_usage` asks for the usage chunk; the options only with `stream`, as the API
    refuses them otherwise."""
    stream_options = mapping(body, "stream_options")
    if stream_options is None:
        return False
    if boolean(body, "stream") is not True:
        raise refuse("stream_options", "is only allowed when stream is true")
    STREAM_OPTIONS.check(stream_options, "stream_options")
    boolean(stream_options, "include_obfuscation", "stream_options")  # ignored (members.py), yet of its type
    return boolean(stream_options, "include_usage", "stream_options") is True


def function_tool(function: Json, path: str) -> Tool:
    """A function's name, description, parameters and strictness, at `path` (Chat Completions nests them under a
    tool's `function`; the Responses API gives them on the tool itself)."""
    return Tool(
        name=text(function, "name", path, required=True) or "",
        description=text(function, "description", path) or "",
        parameters=schema(function, "parameters", path) or {"type": "object", "properties": {}},
        strict=boolean(function, "strict", path) is True,
    )


def choice_mode(choice: str) -> ToolChoice:
    """A `tool_choice` string, as both OpenAI APIs name the modes."""
    modes = {"auto": ToolChoiceMode.AUTO, "none": ToolChoiceMode.NONE, "required": ToolChoiceMode.REQUIRED}
    if choice not in modes:
        raise refuse("tool_choice", f"unknown tool_choice {quoted(choice)}; expected auto, none or required")
    return ToolChoice(modes[choice])


def allowed_tools_choice(choice: Json, nested: bool) -> tuple[ToolChoice, dict[str, str]]:
    """A tool choice of type `allowed_tools`: its mode and the function tools it allows, under `allowed_tools` with
    each named under `function` (`nested`, Chat Completions), or beside its type with each named on the entry itself
    (the Responses API); and the path in the request of each allowed name, by its domain path."""
    if nested:
        CHAT_ALLOWED_TOOLS.check(choice, "tool_choice")
        path = "tool_choice.allowed_tools"
        choice = mapping(choice, "allowed_tools", "tool_choice", required=True) or {}
        ALLOWED_TOOLS.check(choice, path)
    else:
        path = "tool_choice"
        RESPONSES_ALLOWED_TOOLS.check(choice, path)
    mode = text(choice, "mode", path, required=True)
    if mode not in ("auto", "required"):
        raise refuse(at(path, "mode"), f"unknown mode {quoted(mode)}; expected auto or required")
    names: list[str] = []
    paths: dict[str, str] = {}
    for entry_path, entry in objects(choice, "tools", path, required=True):
        kind = text(entry, "type", entry_path, required=True)
        if kind != "function":
            raise unsupported(at(entry_path, "type"), f"an allowed tool of type {quoted(kind)}", "function tools are")
        if nested:  # each entry is shaped as a Chat Completions tool choice naming a function
            CHAT_TOOL_CHOICE.check(entry, entry_path)
            entry = mapping(entry, "function", entry_path, required=True) or {}
            entry_path = at(entry_path, "function")
            CHOSEN_FUNCTION.check(entry, entry_path)
        else:
            RESPONSES_TOOL_CHOICE.check(entry, entry_path)
        names.append(text(entry, "name", entry_path, required=True) or "")
        paths[f"tool_choice.allowed_tools[{len(paths)}]"] = at(entry_path, "name")
    if not names:
        raise refuse(at(path, "tools"), "lists no tool; name at least one")
    return ToolChoice(ToolChoiceMode(mode), allowed=tuple(names)), paths


def response_format_at(container: Json, path: str, spec_key: str | None) -> ResponseFormat:
    """The response format object at `path`: its type and, for json_schema, the schema's spec (name, schema, strict,
    description), under `spec_key` (Chat Completions' `json_schema`) or, None, beside the type (the Responses API's
    `text.format`)."""
    kind = text(container, "type", path, required=True)
    if kind in ("text", "json_object"):
        FORMAT_TYPE.check(container, path)
        return ResponseFormat() if kind == "text" else ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    if kind != "json_schema":
        raise refuse(at(path, "type"), f"unknown type {quoted(kind)}; expected text, json_object or json_schema")
    if spec_key is None:
        SPEC_BESIDE_TYPE.check(container, path)
        spec = container
    else:
        Members(read=("type", spec_key)).check(container, path)
        spec = mapping(container, spec_key, path, required=True) or {}
        path = at(path, spec_key)
        FORMAT_SPEC.check(spec, path)
    # Absent, None: the domain refuses a json_schema format without a schema, as over gRPC ("any JSON" is json_object's
    # to ask; an empty schema sent on asked an upstream for nothing).
    checked = schema(spec, "schema", path)
    # What the format is for: the schema's own description keyword says the same, to OpenAI and Anthropic models alike
    # (a llama.cpp grammar ignores it, as every annotation), where the domain has no field of its own for it.
    description = text(spec, "description", path)
    if description is not None and checked is not None:
        if checked.get("description", description) != description:
            raise refuse(at(path, "description"), "differs from the schema's own description; give one of them")
        checked = {**checked, "description": description}
    return ResponseFormat(
        ResponseFormatKind.JSON_SCHEMA,
        schema=checked,
        name=text(spec, "name", path, required=True) or "",
        strict=boolean(spec, "strict", path) is True,
    )


def reasoning_options(effort: str, path: str) -> ReasoningOptions:
    try:
        return ReasoningOptions(effort=ReasoningEffort(effort))
    except ValueError:
        efforts = ", ".join(level.value for level in ReasoningEffort)
        raise refuse(path, f"unknown effort {quoted(effort)}; expected one of {efforts}") from None
