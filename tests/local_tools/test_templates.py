"""Tools on local models: a Hermes template shows the tools and takes tool turns, auto calls through a lazy grammar once
the model opens a call, and Gemma calls the tool a question needs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.local_engine import load_local, local_engine, run
from tests.local_tools import HERMES_TEMPLATE, SAMPLES, TOOLS, ask, assert_valid_calls
from tests.tiny_model import write_tiny_model
from warpcore.server.adapters.llama.tool_calls import CALL_OPENING
from warpcore.server.core.domain import ChatMessage, FinishReason, GenerationParams, Role
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import Tool, ToolCall, ToolChoice, ToolChoiceMode
from warpcore.server.embedded import install_embedded_model


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
        shown, plain = auto.result.finish.prompt_tokens, without_tools.result.finish.prompt_tokens
        assert shown is not None
        assert plain is not None
        assert shown > plain + 40  # tools shown
        # A whole loop: the call the model made, its result, and the next turn.
        (call, *_) = assert_valid_calls(await run(engine, model, ask(ToolChoice(ToolChoiceMode.REQUIRED))), TOOLS)
        turns = (
            ChatMessage(Role.USER, "what is the weather in the world"),
            ChatMessage(Role.ASSISTANT, "", tool_calls=(call,)),
            ChatMessage(Role.TOOL, "sunny", tool_call_id=call.id),
        )
        answer = await run(engine, model, GenerationParams(prompt=None, messages=turns, max_tokens=8, tools=TOOLS))
        assert answer.result is not None
        assert answer.result.finish.prompt_tokens is not None
        assert answer.result.finish.prompt_tokens > shown
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


@pytest.mark.parametrize("mode", [ToolChoiceMode.AUTO, ToolChoiceMode.REQUIRED])
async def test_a_call_whose_arguments_spell_the_templates_end_of_turn_is_made_whole(
    tmp_path: Path, mode: ToolChoiceMode
) -> None:
    """The template ends a turn with `</s>`, also when the model writes it as text: in a call, lazy (auto) or
    constrained from the start (required), a member's name and a constant that spell it are the call's JSON."""
    write_tiny_model(tmp_path / "caller.gguf", chat_template=HERMES_TEMPLATE, extra_words=(CALL_OPENING,))
    end = Tool(
        "end",
        "End",
        {
            "type": "object",
            "properties": {"</s>": {"const": "</s>"}},
            "required": ["</s>"],
            "additionalProperties": False,
        },
    )
    async with local_engine(tmp_path) as engine:
        model = await load_local(engine, "caller", name="caller.gguf", context_size=2048)
        for seed in range(SAMPLES):
            params = dataclasses.replace(ask(ToolChoice(mode), seed=seed), tools=(end,))
            (call,) = assert_valid_calls(
                await run(engine, model, params), (end,), text_before=mode is ToolChoiceMode.AUTO
            )
            assert json.loads(call.arguments) == {"</s>": "</s>"}


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
