"""The options of an Anthropic Messages request: temperature, stop sequences, tool choice (with
`disable_parallel_tool_use`), the output format (`output_config.format`, or the beta's `output_format`), thinking with
the effort, and the shapes of the ignored `service_tier` and `metadata`."""

from __future__ import annotations

from warpcore._sampling_ranges import ANTHROPIC_MAX_TEMPERATURE
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
from warpcore.server.http.fields import Json, at, boolean, integer, mapping, number, refuse, schema, text, unsupported
from warpcore.server.http.inner_members import ANTHROPIC_TOOL_CHOICE, METADATA, OUTPUT_FORMAT, THINKING

_CHOICES = {"auto": ToolChoiceMode.AUTO, "any": ToolChoiceMode.REQUIRED, "none": ToolChoiceMode.NONE}
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_SERVICE_TIERS = ("auto", "standard_only")
MAX_USER_ID_CHARS = 256
"""The API's limit on `metadata.user_id`."""


def temperature(body: Json) -> float | None:
    """The API's range, narrower than warpcore's own (OpenAI's, to 2), whatever the backend: code that sent 1.5 here
    would fail there. Checked whole, so that a refusal says this range rather than the wider one."""
    value = number(body, "temperature")
    if value is not None and not 0 <= value <= ANTHROPIC_MAX_TEMPERATURE:  # NaN too
        raise refuse("temperature", f"must be between 0 and {ANTHROPIC_MAX_TEMPERATURE:g}")
    return value


def stop_sequences(body: Json) -> tuple[str, ...]:
    """Each with some text other than whitespace, as the API wants them (it refuses a newline alone, or spaces)."""
    stops = body.get("stop_sequences")
    stops = [] if stops is None else stops  # null is unset; {}, 0 or "" are not an array
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise refuse("stop_sequences", "must be an array of strings")
    for stop in stops:
        if not stop.strip():
            raise refuse("stop_sequences", f"each must hold text other than whitespace, not {quoted(stop)}")
    return tuple(stops)


def check_ignored(body: Json) -> None:
    """`service_tier` and `metadata`, which change no answer here and are not passed on, checked as the API checks
    them: a misspelt tier or a user id of the wrong type is refused there, so code that passed here would fail there."""
    tier = text(body, "service_tier")
    if tier is not None and tier not in _SERVICE_TIERS:
        raise refuse("service_tier", f"unknown tier {quoted(tier)}; expected auto or standard_only")
    metadata = mapping(body, "metadata")
    if metadata is None:
        return
    METADATA.check(metadata, "metadata")
    user_id = text(metadata, "user_id", "metadata")
    if user_id is not None and len(user_id) > MAX_USER_ID_CHARS:
        raise refuse("metadata.user_id", f"must be at most {MAX_USER_ID_CHARS} characters, not {len(user_id)}")


def tool_choice(choice: Json | None, tools: tuple[Tool, ...]) -> tuple[ToolChoice, bool]:
    """The choice, and whether the model may call several tools at once (`disable_parallel_tool_use`)."""
    if choice is None:
        return ToolChoice(), True
    ANTHROPIC_TOOL_CHOICE.check(choice, "tool_choice")
    parallel = boolean(choice, "disable_parallel_tool_use", "tool_choice") is not True
    kind = text(choice, "type", "tool_choice", required=True) or ""
    if kind == "tool":
        name = text(choice, "name", "tool_choice", required=True) or ""
        if name not in {tool.name for tool in tools}:
            raise refuse("tool_choice.name", f"names no tool in tools: {quoted(name)}")
        return ToolChoice(ToolChoiceMode.NAMED, name), parallel
    if kind not in _CHOICES:
        raise refuse("tool_choice.type", f"unknown type {quoted(kind)}; expected auto, any, tool or none")
    return ToolChoice(_CHOICES[kind]), parallel


def output_format(body: Json, output_config: Json) -> ResponseFormat | None:
    """`output_config.format`, or the beta's top-level `output_format` (not both)."""
    output_format, path = mapping(output_config, "format", "output_config"), "output_config.format"
    if (beta := mapping(body, "output_format")) is not None:
        if output_format is not None:
            raise refuse("output_format", "give output_config.format or output_format, not both")
        output_format, path = beta, "output_format"
    if output_format is None:
        return None
    OUTPUT_FORMAT.check(output_format, path)
    if text(output_format, "type", path, required=True) != "json_schema":
        raise refuse(at(path, "type"), "expected json_schema")
    checked = schema(output_format, "schema", path, required=True) or {}
    return ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema=checked, strict=True)


def reasoning(thinking: Json | None, effort_name: str | None) -> ReasoningOptions | None:
    """`thinking` (its budget) and `output_config.effort` together."""
    effort = None
    if effort_name is not None:
        if effort_name not in _EFFORTS:
            # OpenAI's other efforts (minimal, none) are refused here: the client speaks Anthropic's API.
            raise unsupported(
                "output_config.effort",
                f"the effort {quoted(effort_name)}",
                f"the efforts of Anthropic's API are {', '.join(_EFFORTS[:-1])} and {_EFFORTS[-1]}",
            )
        effort = ReasoningEffort(effort_name)
    if thinking is not None:
        THINKING.check(thinking, "thinking")
    kind = text(thinking, "type", "thinking", required=True) if thinking is not None else None
    if kind not in (None, "enabled", "adaptive", "disabled"):
        raise refuse("thinking.type", f"unknown type {quoted(kind)}; expected enabled, adaptive or disabled")
    budget = integer(thinking, "budget_tokens", "thinking", required=kind == "enabled") if thinking else None
    if budget is not None and budget < 1:
        raise refuse("thinking.budget_tokens", "must be at least 1")
    if budget is not None and kind == "disabled":
        raise refuse("thinking.budget_tokens", "a budget goes with thinking of type enabled; disabled takes none")
    if kind in (None, "disabled") and effort is None:
        return None
    # An adaptive budget is passed on for the rule that refuses it with adaptive (it was dropped unsaid).
    return ReasoningOptions(effort, budget, adaptive=kind == "adaptive")
