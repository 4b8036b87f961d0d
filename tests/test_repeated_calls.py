"""A model that does not end its turn after its tool calls (Gemma, a base model) writes them again and again: on a
llama.cpp model, a call that repeats an earlier one ends the calls, and is neither streamed nor kept, so that the
answer is its calls (finish TOOL_CALLS), not a cut at the token budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.test_same_answer import gemma_path, gemma_stub, load_gemma  # noqa: F401 - the Gemma fixtures
from tests.tool_wire import WEATHER, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

BUDGET = 256


@pytest.mark.parametrize(
    ("question", "cities"),
    [("Weather in Paris?", ["Paris"]), ("Weather in Paris and Rome?", ["Paris", "Rome"])],
)
async def test_a_repeated_call_ends_the_calls_well_inside_the_budget(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
    question: str,
    cities: list[str],
) -> None:
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=1)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user(question)],
        tools=[WEATHER],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED),
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    streamed = await stream(gemma_stub.Generate(request))
    assert streamed.result is not None
    result = streamed.result
    assert result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert result.usage.completion_tokens < BUDGET
    assert [json.loads(call.arguments)["city"] for call in result.tool_calls] == cities
    # What streamed is the result's calls, and nothing of the repeat that ended them.
    assert sorted({delta.index for delta in streamed.calls}) == list(range(len(cities)))
    streamed_calls = [json.loads(streamed.arguments(index)) for index in range(len(cities))]
    assert streamed_calls == [json.loads(call.arguments) for call in result.tool_calls]


async def test_a_budget_that_runs_out_in_the_repeat_still_ends_with_the_calls(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
) -> None:
    """A tester's finding: with max_tokens between the first call's end and the repeat's, the answer ended LENGTH,
    its one call complete."""
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=1)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user("Weather in Paris?")],
        tools=[WEATHER],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED),
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    whole = await stream(gemma_stub.Generate(request))
    assert whole.result is not None
    used = whole.result.usage.completion_tokens  # the call, then its repeat
    for cut_at in (used - 2, used - 8):
        request.options.max_tokens = cut_at
        cut = await stream(gemma_stub.Generate(request))
        assert cut.result is not None
        assert cut.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS, cut_at
        assert [(call.name, call.arguments) for call in cut.result.tool_calls] == [
            (call.name, call.arguments) for call in whole.result.tool_calls
        ]
