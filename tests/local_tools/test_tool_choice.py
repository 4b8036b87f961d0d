"""Tools on local models: required, named, allowed and none tool choices constrain the calls to valid ones of the
declared tools, arguments holding escapes parse, parallel calls, auto on a template without a tool format, and the
reasoning and verbosity options refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.local_engine import load_local, run
from tests.local_tools import SAMPLES, SEARCH, TOOLS, ask, assert_valid_calls
from warpcore.server.core.domain import FinishReason, GenerationParams
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import ReasoningEffort, ReasoningOptions, Tool, ToolChoice, ToolChoiceMode


async def test_required_tool_choice_gives_valid_calls_of_declared_tools(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    names = set()
    for seed in range(SAMPLES):
        outcome = await run(engine, model, ask(ToolChoice(ToolChoiceMode.REQUIRED), seed=seed))
        names |= {call.name for call in assert_valid_calls(outcome, TOOLS)}
    assert names == {"get_weather", "search-web"}


async def test_arguments_whose_json_holds_escapes_parse_and_validate(engine: Engine) -> None:
    """Constants, enum values and member names with a backslash, a quote or a line break: the grammar wrote their
    backslashes unescaped (JSON that is not, or other strings), or could not be built at all."""
    save = Tool(
        "save-file",
        "Save a file",
        {
            "type": "object",
            "properties": {
                "path": {"enum": ["C:\\temp\\a.txt", "line\nbreak", 'say "hi"']},
                'mode "w"': {"const": "w\\b"},
            },
            "required": ["path", 'mode "w"'],
            "additionalProperties": False,
        },
    )
    model = await load_local(engine, "tiny")
    paths = set()
    for seed in range(SAMPLES):
        params = dataclasses.replace(ask(ToolChoice(ToolChoiceMode.NAMED, save.name), seed=seed), tools=(save,))
        (call,) = assert_valid_calls(await run(engine, model, params), (save,))
        paths.add(json.loads(call.arguments)["path"])
    assert len(paths) > 1  # the grammar let the values vary, and each one parsed as itself


async def test_a_named_tool_is_the_one_called_once(engine: Engine) -> None:
    model = await load_local(engine, "tiny", parallel=2)
    for seed in range(SAMPLES):
        choice = ToolChoice(ToolChoiceMode.NAMED, "search-web")
        outcome = await run(engine, model, ask(choice, seed=seed, parallel_calls=True))
        (call,) = assert_valid_calls(outcome, (SEARCH,))
        assert call.name == "search-web"


async def test_parallel_calls_may_be_several_and_each_is_valid(engine: Engine) -> None:
    """This random model never chooses to stop while another call may follow, so its turns end at max_tokens."""
    model = await load_local(engine, "tiny", context_size=2048)
    several = 0
    for seed in range(SAMPLES):
        choice = ToolChoice(ToolChoiceMode.REQUIRED)
        outcome = await run(engine, model, ask(choice, seed=seed, parallel_calls=True, max_tokens=500))
        several += len(assert_valid_calls(outcome, TOOLS, may_be_cut=True)) > 1
        alone = await run(engine, model, ask(choice, seed=seed))  # parallel_tool_calls off: one call, then the end
        assert len(assert_valid_calls(alone, TOOLS)) == 1
    assert several > 0


async def test_allowed_tools_are_the_only_ones_called_and_every_tool_stays_in_the_prompt(engine: Engine) -> None:
    """The grammar narrows the calls; the prompt, and so the prompt cache, is that of the whole set."""
    model = await load_local(engine, "tiny")
    allowed = ToolChoice(ToolChoiceMode.REQUIRED, allowed=("search-web",))
    for seed in range(SAMPLES):  # unnarrowed, these seeds call both tools (the required choice's test)
        (call,) = assert_valid_calls(await run(engine, model, ask(allowed, seed=seed)), (SEARCH,))
        assert call.name == "search-web"
    every = await engine.count_tokens(model, ask(ToolChoice(ToolChoiceMode.REQUIRED)), include_tokens=True)
    narrowed = await engine.count_tokens(model, ask(allowed), include_tokens=True)
    assert narrowed == every
    assert '"name": "get_weather"' in b"".join(token.piece for token in narrowed.tokens).decode()


async def test_tool_choice_none_generates_text(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    outcome = await run(engine, model, ask(ToolChoice(ToolChoiceMode.NONE), temperature=0.0, max_tokens=12))
    assert outcome.result is not None
    assert outcome.result.finish.reason is FinishReason.LENGTH
    assert outcome.text
    assert not outcome.deltas


async def test_auto_on_a_template_without_a_tool_format_tells_of_the_tools_and_may_answer_in_text(
    engine: Engine,
) -> None:
    """The tools and the call's format in words, the model free to answer instead (an agent's turn after its tool
    results, the OpenAI Agents SDK sending auto again); a call it opens, the grammar completes."""
    model = await load_local(engine, "tiny")
    auto = ask(ToolChoice(ToolChoiceMode.AUTO), temperature=0.0, max_tokens=16)
    outcome = await run(engine, model, auto)
    assert outcome.result is not None
    assert outcome.result.finish.reason is FinishReason.LENGTH
    assert outcome.text  # this random model opens no call
    prompt = await engine.count_tokens(model, auto, include_tokens=True)
    words = b"".join(token.piece for token in prompt.tokens).decode()
    assert "To call one of these tools, write <tool_call>" in words
    assert '"name": "get_weather"' in words
    forced = await engine.count_tokens(model, ask(ToolChoice(ToolChoiceMode.REQUIRED)), include_tokens=True)
    assert "Call one of these tools as <tool_call>" in b"".join(token.piece for token in forced.tokens).decode()
    assert_valid_calls(await run(engine, model, ask(ToolChoice(ToolChoiceMode.REQUIRED))), TOOLS)


async def test_reasoning_options_are_refused_but_effort_none(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    params = GenerationParams(
        prompt="the world", messages=(), max_tokens=8, reasoning=ReasoningOptions(effort=ReasoningEffort.LOW)
    )
    with pytest.raises(InvalidArgumentError) as refused:
        await run(engine, model, params)
    assert refused.value.field == "reasoning"
    # No reasoning asked for: what a model without reasoning does, and the same text as without the option.
    plain = await run(engine, model, dataclasses.replace(params, reasoning=None, temperature=0.0))
    none = ReasoningOptions(effort=ReasoningEffort.NONE)
    assert (await run(engine, model, dataclasses.replace(params, reasoning=none, temperature=0.0))).text == plain.text


async def test_verbosity_is_refused(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    params = GenerationParams(prompt="the world", messages=(), max_tokens=8, verbosity="low")
    with pytest.raises(InvalidArgumentError) as refused:
        await run(engine, model, params)
    assert refused.value.field == "verbosity"
