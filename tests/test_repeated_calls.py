"""A model that does not end its turn after its tool calls (Gemma, a base model) writes them again and again: on a
llama.cpp model, a call that repeats an earlier one ends the calls, and is neither streamed nor kept, so that the
answer is its calls (finish TOOL_CALLS), not a cut at the token budget."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import serving_doors
from tests.http_door import async_anthropic_client, async_openai_client
from tests.test_same_answer import gemma_path, gemma_stub, load_gemma  # noqa: F401 - the Gemma fixtures
from tests.tool_wire import WEATHER, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, tools_pb2

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
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
        # Nothing of the repeat streamed, also when the cut fell in its closing line.
        assert {delta.index for delta in cut.calls} == {0}, cut_at
        assert cut.arguments(0) == whole.result.tool_calls[0].arguments


# A tool as the Python SDK declares `def get_weather(city: str) -> str`, and a loop's second turn: Gemma calls again.
CITY_WEATHER = tools_pb2.Tool(
    name="get_weather",
    description="The current weather in a city.",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
AFTER_RESULT = [
    user("What is the weather in Paris?"),
    pb.ChatMessage(
        role=pb.ROLE_ASSISTANT,
        tool_calls=[tools_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')],
    ),
    pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_1", content="Sunny, 24 C in Paris"),
]


@pytest.mark.parametrize("parallel", [1, 4])
async def test_a_budget_that_runs_out_between_the_calls_ends_with_the_calls(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
    parallel: int,
) -> None:
    """An outside tester's finding: max_tokens running out after a whole call, on the line break or the next call's
    opening marker (which may yet begin a repeat), ended LENGTH, where a cut inside the repeat ends TOOL_CALLS. A cut
    in the call itself before its arguments are whole is still a cut; one in its closing line is not."""
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=parallel)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=AFTER_RESULT,
        tools=[CITY_WEATHER],
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    whole = await stream(gemma_stub.Generate(request))
    assert whole.result is not None
    assert whole.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    (call,) = [(call.name, call.arguments) for call in whole.result.tool_calls]
    used = whole.result.usage.completion_tokens
    assert used % 2 == 1  # the call, a line break, and the call again token for token (the repeat that ends them)
    call_end = used // 2
    # In the call's closing line, then at its end, after the line break, and in the next call's opening marker.
    for cut_at, finish in (
        (call_end - 1, pb.FINISH_REASON_TOOL_CALLS),
        (call_end, pb.FINISH_REASON_TOOL_CALLS),
        (call_end + 1, pb.FINISH_REASON_TOOL_CALLS),
        (call_end + 3, pb.FINISH_REASON_TOOL_CALLS),
    ):
        request.options.max_tokens = cut_at
        cut = await stream(gemma_stub.Generate(request))
        assert cut.result is not None
        assert (cut.result.finish_reason, cut.result.usage.completion_tokens) == (finish, cut_at)
        assert [(call.name, call.arguments) for call in cut.result.tool_calls] == [call]
        # What streamed is the result's call, and nothing of what followed it.
        assert {delta.index for delta in cut.calls} == {0}
        assert (cut.calls[0].name, cut.arguments(0)) == call


@pytest.fixture
async def gemma_doors(gemma_path: tuple[Path, str]) -> AsyncIterator[tuple[Doors, Stub]]:  # noqa: F811 - imported
    """Both doors, the embedded Gemma loaded as "gemma", and a gRPC stub."""
    root, name = gemma_path
    async with (
        serving_doors({"MODELS_PATH": str(root), "LLAMA_THREADS": "2"}) as doors,
        grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_gemma(stub, name, "gemma", parallel=1)
        yield doors, stub


async def test_a_budget_that_runs_out_in_the_calls_closing_line_ends_with_the_call(
    gemma_doors: tuple[Doors, Stub],
) -> None:
    """An outside tester's finding: a forced call whose arguments were whole when max_tokens ran out in the
    `</tool_call>` line the grammar writes after them ended `length` in every dialect (its tokens count in the usage:
    the call took some 35 where its arguments took 10). Nothing of the model's was cut: the answer is its call. A cut
    before the arguments are whole is still a cut, its call shown as far as it came."""
    doors, stub = gemma_doors
    tool: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": CITY_WEATHER.description,
            "parameters": json.loads(CITY_WEATHER.parameters_json),
        },
    }
    question = "What is the weather in Paris?"
    chat: dict[str, Any] = {"model": "gemma", "messages": [{"role": "user", "content": question}], "tools": [tool]}
    chat |= {"tool_choice": "required", "temperature": 0}
    messages: dict[str, Any] = {"model": "gemma", "messages": chat["messages"], "tool_choice": {"type": "any"}}
    messages["extra_body"] = {"temperature": 0}  # the anthropic SDK has no such argument any more
    function = tool["function"]
    messages["tools"] = [{"name": "get_weather", "description": function["description"]}]
    messages["tools"][0]["input_schema"] = function["parameters"]  # the same prompt in each dialect
    grpc_request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user(question)],
        tools=[CITY_WEATHER],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED),
        options=pb.GenerationOptions(temperature=0),
    )
    async with async_openai_client(doors) as openai, async_anthropic_client(doors) as anthropic:
        whole = await openai.chat.completions.create(max_tokens=BUDGET, **chat)
        assert whole.usage is not None
        grpc_request.options.max_tokens = BUDGET
        same = await stream(stub.Generate(grpc_request))
        assert same.result is not None
        assert same.result.usage.completion_tokens == whole.usage.completion_tokens
        call_end = whole.usage.completion_tokens // 2  # the call, a line break, and its repeat
        for cut_at in (call_end - 1, call_end - 6):  # in the closing line; the tester's max_tokens=30
            answer = await openai.chat.completions.create(max_tokens=cut_at, **chat)
            assert answer.choices[0].finish_reason == "tool_calls", cut_at
            assert [
                (call.function.name, json.loads(call.function.arguments))
                for call in answer.choices[0].message.tool_calls or []
            ] == [("get_weather", {"city": "Paris"})]
            finishes, arguments = [], ""
            async for chunk in await openai.chat.completions.create(max_tokens=cut_at, stream=True, **chat):
                for choice in chunk.choices:
                    finishes += [choice.finish_reason] if choice.finish_reason else []
                    arguments += "".join(
                        call.function.arguments or "" for call in choice.delta.tool_calls or [] if call.function
                    )
            assert (finishes, json.loads(arguments)) == (["tool_calls"], {"city": "Paris"}), cut_at
            message = await anthropic.messages.create(max_tokens=cut_at, **messages)
            assert message.stop_reason == "tool_use", cut_at
            assert [(block.type, getattr(block, "input", None)) for block in message.content] == [
                ("tool_use", {"city": "Paris"})
            ]
            grpc_request.options.max_tokens = cut_at
            streamed = await stream(stub.Generate(grpc_request))
            assert streamed.result is not None
            assert streamed.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS, cut_at
            assert [json.loads(call.arguments) for call in streamed.result.tool_calls] == [{"city": "Paris"}]
        # In the arguments ("Paris" written, its object not closed): a cut, shown as far as it came.
        cut = await openai.chat.completions.create(max_tokens=call_end - 10, **chat)
        assert cut.choices[0].finish_reason == "length"
        (call,) = cut.choices[0].message.tool_calls or []
        assert '"Paris"'.startswith(call.function.arguments.rsplit(": ", 1)[1])
        message = await anthropic.messages.create(max_tokens=call_end - 10, **messages)
        assert message.stop_reason == "max_tokens"
        grpc_request.options.max_tokens = call_end - 10
        streamed = await stream(stub.Generate(grpc_request))
        assert streamed.result is not None
        assert (streamed.result.finish_reason, len(streamed.result.tool_calls)) == (pb.FINISH_REASON_LENGTH, 0)
