"""Tools on local models: required and named tool choice constrained by grammar to valid calls of declared tools,
streamed as tool-call deltas; auto, with the tools shown by the template or, where it has no tool-call format, in
words; tool turns
rendered through the template; what a model cannot do refused naming the field."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.local_engine import Outcome, load_local, local_engine, run
from tests.tiny_model import write_tiny_model
from warpcore.server.adapters.llama.tool_calls import CALL_OPENING
from warpcore.server.core.domain import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Role,
)
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import (
    ReasoningEffort,
    ReasoningOptions,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from warpcore.server.embedded import install_embedded_model

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
)
SEARCH = Tool(
    "search-web",
    "Search the web",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 20}, "top": {"type": "boolean"}},
        "required": ["query"],
    },
)
TOOLS = (WEATHER, SEARCH)
SAMPLES = 10
# A Hermes-style template (as Qwen's and Hermes' GGUFs carry): tools shown to the model, calls and results as turns.
HERMES_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<system>Tools: {% for tool in tools %}{{ tool | tojson }}{% endfor %}"
    " Call one as <tool_call>{...}</tool_call>\n{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
    "{% for call in m.tool_calls or [] %}<tool_call>\n{{ call.function | tojson }}\n</tool_call>{% endfor %}"
    "{% if m.tool_call_id %} (result of {{ m.tool_call_id }}){% endif %}\n{% endfor %}<assistant>"
)


@pytest.fixture
async def engine(models_path: Path) -> AsyncIterator[Engine]:
    async with local_engine(models_path) as started:
        yield started


def ask(choice: ToolChoice, *, seed: int = 0, parallel_calls: bool = False, **options: Any) -> GenerationParams:
    options = {"max_tokens": 300, "temperature": 1.0, **options}
    return GenerationParams(
        prompt=None,
        messages=(ChatMessage(Role.USER, "what is the weather in the world"),),
        seed=seed,
        tools=TOOLS,
        tool_choice=choice,
        parallel_tool_calls=parallel_calls,
        **options,
    )


def assert_valid_calls(
    outcome: Outcome, allowed: tuple[Tool, ...], *, may_be_cut: bool = False, text_before: bool = False
) -> tuple[ToolCall, ...]:
    """The result's calls are calls of `allowed` tools with valid arguments, and the deltas spell them out. With
    `may_be_cut`, max_tokens may have cut a further call short: its deltas came, it is not among the calls."""
    assert outcome.result is not None
    finish = outcome.result.finish
    cut = may_be_cut and finish.reason is FinishReason.LENGTH
    assert cut or finish.reason is FinishReason.TOOL_CALLS, (finish, outcome.deltas)
    assert bool(outcome.text) is text_before
    assert finish.tool_calls
    schemas = {tool.name: tool.parameters for tool in allowed}
    for index, call in enumerate(finish.tool_calls):
        jsonschema.validate(json.loads(call.arguments), schemas[call.name])
        assert call.id.startswith("call_")
        mine = [delta for delta in outcome.deltas if delta.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)  # named on its first delta
        assert all(not delta.id and not delta.name for delta in mine[1:])
        assert "".join(delta.arguments for delta in mine) == call.arguments
        assert len(mine) > 2  # the arguments streamed as they decoded, not in one piece at the end
    assert len({call.id for call in finish.tool_calls}) == len(finish.tool_calls)
    assert {delta.index for delta in outcome.deltas} == set(range(len(finish.tool_calls) + cut))
    return finish.tool_calls


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


@pytest.mark.parametrize(
    "choice", [ToolChoice(ToolChoiceMode.REQUIRED), ToolChoice(ToolChoiceMode.NAMED, "search-web")], ids=str
)
async def test_a_call_cut_short_in_its_opening_marker_sends_no_text(engine: Engine, choice: ToolChoice) -> None:
    """The grammar makes the model open a call at once: the marker's first characters, cut short by max_tokens, are
    a call cut short (dropped), never answer text."""
    model = await load_local(engine, "tiny")
    cut_in_marker = 0
    for max_tokens in range(1, len(CALL_OPENING) + 2):
        outcome = await run(engine, model, ask(choice, max_tokens=max_tokens, temperature=0.0, logprobs=True))
        assert outcome.result is not None
        assert outcome.result.finish.reason is FinishReason.LENGTH
        assert outcome.text == ""
        assert outcome.result.finish.tool_calls == ()
        cut_in_marker += not outcome.deltas
    assert cut_in_marker >= 2  # cuts fell inside the marker, not only after it


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


async def test_a_call_whose_arguments_were_whole_when_max_tokens_cut_it_is_complete(engine: Engine) -> None:
    """Cut in its closing line, a call is kept, as a hosted API's is; cut in its arguments, it is left out. Either way
    its deltas join to what the result lists."""
    model = await load_local(engine, "tiny")
    whole = await run(engine, model, ask(ToolChoice(ToolChoiceMode.NAMED, "search-web"), seed=3))
    (call,) = assert_valid_calls(whole, (SEARCH,))
    assert whole.result is not None
    spent = whole.result.finish.completion_tokens
    for max_tokens, complete in ((spent - 1, True), (spent // 2, False)):  # in the closing line; in the arguments
        choice = ToolChoice(ToolChoiceMode.NAMED, "search-web")
        outcome = await run(engine, model, ask(choice, seed=3, max_tokens=max_tokens))
        assert outcome.result is not None
        assert outcome.result.finish.reason is FinishReason.LENGTH
        streamed = "".join(delta.arguments for delta in outcome.deltas)
        if complete:
            assert outcome.result.finish.tool_calls == (dataclasses.replace(call, id=outcome.deltas[0].id),)
            assert streamed == call.arguments
        else:
            assert not outcome.result.finish.tool_calls
            assert call.arguments.startswith(streamed)
            assert len(streamed) < len(call.arguments)


async def test_a_further_call_cut_short_streams_as_far_as_it_came(engine: Engine) -> None:
    """A tester's finding: held back until complete, a second call that max_tokens cut short was never sent, where
    the first call's deltas, and a hosted API's, go out as far as they came (the chat route's tool_calls, the
    Responses API's incomplete call)."""
    model = await load_local(engine, "tiny", context_size=2048)
    required = ToolChoice(ToolChoiceMode.REQUIRED)
    for seed in range(SAMPLES):
        whole = await run(engine, model, ask(required, seed=seed, parallel_calls=True, max_tokens=500))
        calls = assert_valid_calls(whole, TOOLS, may_be_cut=True)
        if len(calls) > 1 and calls[0].name != calls[1].name:  # never a repeat of the first, however far it came
            break
    else:
        raise AssertionError("no seed called two different tools")
    assert whole.result is not None
    cut_in_second = 0
    for max_tokens in range(1, whole.result.finish.completion_tokens):
        outcome = await run(engine, model, ask(required, seed=seed, parallel_calls=True, max_tokens=max_tokens))
        second = [delta for delta in outcome.deltas if delta.index == 1]
        if second:
            assert (second[0].id.startswith("call_"), second[0].name) == (True, calls[1].name)
            streamed = "".join(delta.arguments for delta in second)
            assert calls[1].arguments.startswith(streamed)
            cut_in_second += len(streamed) < len(calls[1].arguments)
    assert cut_in_second > 0


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


async def test_a_hermes_template_shows_tools_and_takes_tool_turns(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "hermes.gguf", chat_template=HERMES_TEMPLATE)
    async with local_engine(tmp_path) as engine:
        model = await load_local(engine, "hermes", name="hermes.gguf")
        # Auto: free text unless the model opens a call; this random model does not, so it answers in text.
        auto = await run(engine, model, ask(ToolChoice(ToolChoiceMode.AUTO), temperature=0.0, max_tokens=16))
        assert auto.result is not None
        assert auto.result.finish.reason is FinishReason.LENGTH
        assert auto.text
        without_tools = await run(engine, model, ask(ToolChoice(ToolChoiceMode.NONE), temperature=0.0, max_tokens=16))
        assert without_tools.result is not None
        assert auto.result.finish.prompt_tokens > without_tools.result.finish.prompt_tokens + 40  # tools shown
        # A whole loop: the call the model made, its result, and the next turn.
        (call, *_) = assert_valid_calls(await run(engine, model, ask(ToolChoice(ToolChoiceMode.REQUIRED))), TOOLS)
        turns = (
            ChatMessage(Role.USER, "what is the weather in the world"),
            ChatMessage(Role.ASSISTANT, "", tool_calls=(call,)),
            ChatMessage(Role.TOOL, "sunny", tool_call_id=call.id),
        )
        answer = await run(engine, model, GenerationParams(prompt=None, messages=turns, max_tokens=8, tools=TOOLS))
        assert answer.result is not None
        assert answer.result.finish.prompt_tokens > auto.result.finish.prompt_tokens
        bad = ChatMessage(Role.ASSISTANT, "", tool_calls=(ToolCall("call_2", "get_weather", "{not json"),))
        params = GenerationParams(prompt=None, messages=(turns[0], bad), max_tokens=8, tools=TOOLS)
        with pytest.raises(InvalidArgumentError) as refused:
            await run(engine, model, params)
        assert refused.value.field == "messages[1].tool_calls[0].arguments"


async def test_auto_calls_through_a_lazy_grammar_once_the_model_opens_a_call(tmp_path: Path) -> None:
    """Auto on a Hermes template: free text until the model writes `<tool_call>` (a word of this model's vocabulary,
    emitted as often as any), from there a call valid by grammar, then the end of the turn."""
    write_tiny_model(tmp_path / "caller.gguf", chat_template=HERMES_TEMPLATE, extra_words=(CALL_OPENING,))
    async with local_engine(tmp_path) as engine:
        model = await load_local(engine, "caller", name="caller.gguf", context_size=2048)
        called = answered = 0
        for seed in range(SAMPLES * 2):
            outcome = await run(engine, model, ask(ToolChoice(ToolChoiceMode.AUTO), seed=seed, max_tokens=250))
            assert outcome.result is not None
            finish = outcome.result.finish
            if outcome.deltas and finish.reason is FinishReason.LENGTH:
                # Random weights may write a long string argument: max_tokens ends it inside the call, which is
                # then no call at all, though its name and the arguments so far were streamed.
                assert CALL_OPENING not in outcome.text
                assert not finish.tool_calls
                assert outcome.deltas[0].name in {tool.name for tool in TOOLS}
            elif outcome.deltas:
                assert CALL_OPENING not in outcome.text
                assert_valid_calls(outcome, TOOLS, text_before=True)
                called += 1
            else:
                assert finish.reason in (FinishReason.STOP, FinishReason.LENGTH)
                answered += 1
        assert called > 0
        assert answered > 0


async def test_gemma_calls_the_tool_a_question_needs(tmp_path: Path) -> None:
    async with local_engine(tmp_path) as engine:
        name = install_embedded_model(tmp_path)
        model = await load_local(engine, "gemma", name=name, threads=2, chat_format="gemma")
        question = ChatMessage(Role.USER, "What is the weather in Paris for the next 3 days?")
        params = GenerationParams(
            prompt=None,
            messages=(question,),
            max_tokens=120,
            temperature=0.0,
            tools=TOOLS,
            tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
            parallel_tool_calls=False,
        )
        (call,) = assert_valid_calls(await run(engine, model, params), TOOLS)
        assert call.name == "get_weather"


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
