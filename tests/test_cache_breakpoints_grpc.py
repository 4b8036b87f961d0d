"""Cache breakpoints asked for over gRPC and through the SDK: what the Anthropic wire receives (cache_control on the
blocks they end), what the other backends receive (nothing), and the rules (at most 4, long ones first) with the field
each refusal names."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.cache_breakpoints_support import EPHEMERAL, HOUR
from tests.conftest import collect, failed_stream, greedy, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import ANTHROPIC_KEY, load, posts
from tests.tool_wire import CLOCK, WEATHER, chat, stream, user
from warpcore.client import ApiConfig, AsyncClient, Image, Message, Text, Tool
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


SHORT, LONG = cpb.CACHE_BREAKPOINT_SHORT, cpb.CACHE_BREAKPOINT_LONG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def marked_tool(tool: tools_pb2.Tool, mark: int) -> tools_pb2.Tool:
    marked = tools_pb2.Tool()
    marked.CopyFrom(tool)
    marked.cache_breakpoint = mark  # type: ignore[assignment]
    return marked


def tool_loop(*, mark_result: int = SHORT) -> list[pb.ChatMessage]:
    """A system turn, a question, a call, its result (ending in `mark_result`), and a user turn of text and an image
    (the image ending in a breakpoint)."""
    call = tools_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Bern"}')
    return [
        pb.ChatMessage(role=pb.ROLE_SYSTEM, content="Answer in French."),
        user("Weather in Bern?"),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[call]),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_1", content="sunny", cache_breakpoint=mark_result),  # type: ignore[arg-type]
        pb.ChatMessage(
            role=pb.ROLE_USER,
            content="And this?",
            parts=[cpb.ContentPart(image=cpb.ImagePart(data=PNG, media_type="image/png"), cache_breakpoint=SHORT)],
        ),
    ]


async def test_anthropic_gets_cache_control_on_the_blocks_the_breakpoints_end(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    options = pb.GenerationOptions(system="Be brief.", system_cache_breakpoint=SHORT)
    request = chat(*tool_loop(), tools=(marked_tool(WEATHER, LONG), CLOCK), options=options)
    await stream(stub.Generate(request))

    body = posts(anthropic_upstream)[-1]
    weather, clock = body["tools"]
    assert weather["cache_control"] == HOUR
    assert "cache_control" not in clock
    # The system prompt and the system turn make the text they made before, cut where the breakpoint stands.
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "\n\nAnswer in French."},
    ]
    result, question, image = body["messages"][2]["content"]
    assert (result["type"], result["cache_control"]) == ("tool_result", EPHEMERAL)
    assert "cache_control" not in question
    assert (image["type"], image["cache_control"]) == ("image", EPHEMERAL)
    assert body["messages"][0]["content"] == "Weather in Bern?"
    assert [block["type"] for block in body["messages"][1]["content"] if "cache_control" not in block] == ["tool_use"]


async def test_a_breakpoint_on_a_plain_text_turn_makes_it_a_block(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    marked = pb.ChatMessage(role=pb.ROLE_USER, content="A long document.", cache_breakpoint=LONG)
    await stream(stub.Generate(chat(marked, user("Its title?"), tools=())))

    body = posts(anthropic_upstream)[-1]
    # Two user turns in a row become one, as ever; the breakpoint stays on the block its message ends.
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "A long document.", "cache_control": HOUR},
                {"type": "text", "text": "Its title?"},
            ],
        }
    ]


async def test_openai_is_sent_nothing_for_breakpoints(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    plain = chat(*tool_loop(mark_result=cpb.CACHE_BREAKPOINT_UNSPECIFIED), tools=(WEATHER, CLOCK))
    plain.messages[4].parts[0].cache_breakpoint = cpb.CACHE_BREAKPOINT_UNSPECIFIED
    marked = chat(*tool_loop(), tools=(marked_tool(WEATHER, LONG), CLOCK))
    for request in (plain, marked):
        await stream(stub.Generate(request))

    without, with_breakpoints = posts(openai_upstream)[-2:]
    assert with_breakpoints == without


async def test_llama_cpp_answers_the_same_with_breakpoints(stub: Stub, tiny: str) -> None:
    plain = greedy("the world", 8, model_id=tiny, system="Be brief.")
    marked = greedy("the world", 8, model_id=tiny, system="Be brief.", system_cache_breakpoint=LONG)
    assert (await collect(stub.Generate(marked)))[0] == (await collect(stub.Generate(plain)))[0]
    options = plain.options
    marked_turn = pb.ChatMessage(role=pb.ROLE_USER, content="the world", cache_breakpoint=SHORT)
    chat_plain = pb.GenerateRequest(model_id=tiny, messages=[user("the world")], options=options)
    chat_marked = pb.GenerateRequest(model_id=tiny, messages=[marked_turn], options=options)
    assert (await collect(stub.Generate(chat_marked)))[0] == (await collect(stub.Generate(chat_plain)))[0]


@pytest.mark.parametrize(
    ("messages", "options", "field"),
    [
        pytest.param(
            [pb.ChatMessage(role=pb.ROLE_USER, content=f"turn {n}", cache_breakpoint=SHORT) for n in range(5)],
            {},
            "messages[4].cache_breakpoint",
            id="five",
        ),
        pytest.param(
            [
                pb.ChatMessage(role=pb.ROLE_USER, content="a", cache_breakpoint=SHORT),
                pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="b", cache_breakpoint=LONG),
            ],
            {},
            "messages[1].cache_breakpoint",
            id="long-after-short",
        ),
        pytest.param(
            [pb.ChatMessage(role=pb.ROLE_USER, content="a", cache_breakpoint=LONG)],
            {"system": "s", "system_cache_breakpoint": SHORT},
            "messages[0].cache_breakpoint",
            id="long-after-short-system",
        ),
        pytest.param(
            [user("a")], {"system_cache_breakpoint": SHORT}, "options.system_cache_breakpoint", id="no-system"
        ),
        pytest.param(
            [pb.ChatMessage(role=pb.ROLE_USER, content="a", cache_breakpoint=7)],  # type: ignore[arg-type]
            {},
            "messages[0].cache_breakpoint",
            id="unknown",
        ),
        pytest.param(
            [
                pb.ChatMessage(
                    role=pb.ROLE_USER,
                    content="a",
                    parts=[cpb.ContentPart(text="b", cache_breakpoint=9)],  # type: ignore[arg-type]
                )
            ],
            {},
            "messages[0].parts[0].cache_breakpoint",
            id="unknown-part",
        ),
    ],
)
async def test_breakpoints_against_the_rules_are_refused_by_field(
    stub: Stub, openai_upstream: FakeOpenAI, messages: list[pb.ChatMessage], options: dict[str, Any], field: str
) -> None:
    """Refused whatever the backend (here OpenAI, which ignores breakpoints), before anything goes upstream."""
    await load(stub, openai_upstream)
    before = len(posts(openai_upstream))
    request = chat(*messages, tools=(), options=pb.GenerationOptions(**options))
    _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]
    assert field.removeprefix("options.") in (error.details() or "")
    assert len(posts(openai_upstream)) == before


async def test_sdk_breakpoints_reach_anthropic(server: WarpcoreServer, anthropic_upstream: FakeAnthropic) -> None:
    tool = Tool("get_time", cache="long")
    vendor_tool = {"name": "get_date", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
    messages = [
        Message("user", "Read this.", parts=(Text("A document.", cache="short"), "Its title?")),
        Message("assistant", "Untitled."),
        Message("user", "Sure?", parts=(Image(data=PNG, media_type="image/png"),), cache="short"),
    ]
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        await client.generate("m", messages=messages, tools=[tool, vendor_tool], system="Be brief.")
        with pytest.raises(ValueError, match="short"):
            await client.generate("m", messages=[Message("user", "x", cache="medium")])  # type: ignore[arg-type]

    body = posts(anthropic_upstream)[-1]
    assert [tool.get("cache_control") for tool in body["tools"]] == [HOUR, EPHEMERAL]
    first, _, last = body["messages"]
    assert [block.get("cache_control") for block in first["content"]] == [None, EPHEMERAL, None]
    # The message's breakpoint lands on its last block, the image.
    assert [block.get("cache_control") for block in last["content"]] == [None, EPHEMERAL]
