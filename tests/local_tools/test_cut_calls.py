"""Tools on local models: calls cut short by max_tokens, in their opening marker, their arguments or their closing line,
and a further call streamed as far as it came."""

from __future__ import annotations

import dataclasses

import pytest

from tests.local_engine import load_local, run
from tests.local_tools import SAMPLES, SEARCH, TOOLS, ask, assert_valid_calls
from warpcore.server.adapters.llama.tool_calls import CALL_OPENING
from warpcore.server.core.domain import FinishReason
from warpcore.server.core.engine import Engine
from warpcore.server.core.tooling import ToolChoice, ToolChoiceMode


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


async def test_a_call_whose_arguments_were_whole_when_max_tokens_cut_it_is_complete(engine: Engine) -> None:
    """Cut in its closing line, which the grammar writes alone after whole arguments, a call is kept and the answer is
    its call (nothing the model chose was cut); cut in its arguments, it is left out, and the answer is cut. Either
    way its deltas join to what the result lists."""
    model = await load_local(engine, "tiny")
    whole = await run(engine, model, ask(ToolChoice(ToolChoiceMode.NAMED, "search-web"), seed=3))
    (call,) = assert_valid_calls(whole, (SEARCH,))
    assert whole.result is not None
    spent = whole.result.finish.completion_tokens
    assert spent is not None
    for max_tokens, complete in ((spent - 1, True), (spent // 2, False)):  # in the closing line; in the arguments
        choice = ToolChoice(ToolChoiceMode.NAMED, "search-web")
        outcome = await run(engine, model, ask(choice, seed=3, max_tokens=max_tokens))
        assert outcome.result is not None
        assert outcome.result.finish.reason is (FinishReason.TOOL_CALLS if complete else FinishReason.LENGTH)
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
    assert whole.result.finish.completion_tokens is not None
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
