"""A whole tool loop through the gRPC API on a local model: the model's call streams as tool-call frames, its
result comes back in a tool turn, and the model answers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import jsonschema

from tests.conftest import serving
from tests.local_tools import HERMES_TEMPLATE, WEATHER
from tests.tiny_model import write_tiny_model
from tests.tool_wire import stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@contextlib.asynccontextmanager
async def tiny_model_with(tmp_path: Path, chat_template: str) -> AsyncIterator[Stub]:
    """A server with the tiny model, written with `chat_template`, loaded as "m"."""
    write_tiny_model(tmp_path / "tiny.gguf", chat_template=chat_template)
    async with (
        serving({"MODELS_PATH": str(tmp_path)}) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="tiny.gguf", model_id="m"))
        yield stub


async def test_tool_loop_call_result_answer_on_llama_cpp(tmp_path: Path) -> None:
    async with tiny_model_with(tmp_path, HERMES_TEMPLATE) as stub:
        weather = tools_pb2.Tool(
            name=WEATHER.name, description=WEATHER.description, parameters_json=json.dumps(WEATHER.parameters)
        )
        question = user("What is the weather in Paris?")

        def ask(turns: list[pb.ChatMessage], mode: tools_pb2.ToolChoiceMode.ValueType) -> pb.GenerateRequest:
            return pb.GenerateRequest(
                model_id="m",
                messages=turns,
                tools=[weather],
                tool_choice=tools_pb2.ToolChoice(mode=mode),
                parallel_tool_calls=False,
                options=pb.GenerationOptions(max_tokens=300, temperature=0.0),
            )

        first = await stream(stub.Generate(ask([question], tools_pb2.TOOL_CHOICE_MODE_REQUIRED)))
        assert first.result is not None
        assert first.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
        [call] = first.result.tool_calls
        assert call.name == "get_weather"
        assert call.id.startswith("call_")
        # The frames streamed the same call the result gives whole, its arguments valid against the tool's schema.
        assert (first.calls[0].id, first.calls[0].name) == (call.id, call.name)
        assert first.arguments(0) == call.arguments
        jsonschema.validate(json.loads(call.arguments), WEATHER.parameters)

        turns = [
            question,
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[call]),
            pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=call.id, content='{"celsius": 21}'),
        ]
        answer = await stream(stub.Generate(ask(turns, tools_pb2.TOOL_CHOICE_MODE_NONE)))
        assert answer.result is not None
        assert answer.result.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
        assert answer.text
        assert not answer.calls
        # The call and its result reached the prompt: it is longer than the question's alone.
        alone = await stream(stub.Generate(ask([question], tools_pb2.TOOL_CHOICE_MODE_NONE)))
        assert alone.result is not None
        assert answer.result.usage.prompt_tokens > alone.result.usage.prompt_tokens + len('{"celsius": 21}') // 4


# A template with no format for tool calls or results that insists on alternating roles, as Gemma's does.
ALTERNATING_TEMPLATE = (
    "{{ bos_token }}{% set turn = namespace(n=0) %}{% for m in messages %}{% if m.role != 'system' %}"
    "{% if (m.role == 'user') != (turn.n % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}"
    "{% set turn.n = turn.n + 1 %}{% endif %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
)


async def test_a_tool_loop_on_a_template_without_tool_turns_goes_as_text(tmp_path: Path) -> None:
    """The call as the grammar made the model write it, the result as a user turn of <tool_response> lines, joined
    with the user's words after it so that roles still alternate."""
    async with tiny_model_with(tmp_path, ALTERNATING_TEMPLATE) as stub:
        weather = tools_pb2.Tool(name=WEATHER.name, parameters_json=json.dumps(WEATHER.parameters))
        choice = tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED)
        options = pb.GenerationOptions(max_tokens=300, temperature=0.0)
        question = user("What is the weather in Paris?")
        ask = pb.GenerateRequest(
            model_id="m", messages=[question], tools=[weather], tool_choice=choice, parallel_tool_calls=False
        )
        ask.options.CopyFrom(options)
        first = await stream(stub.Generate(ask))
        assert first.result is not None
        [call] = first.result.tool_calls
        turns = [
            question,
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[call]),
            pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=call.id, content='{"celsius": 21}'),
            user("And in Rome?"),
        ]
        del ask.messages[:]
        ask.messages.extend(turns)
        counted = await stub.CountTokens(pb.CountTokensRequest(request=ask, include_tokens=True))
        prompt = b"".join(token.piece for token in counted.count.tokens).decode()
        arguments = json.dumps(json.loads(call.arguments))  # one form whatever the spacing: the doors re-encode them
        written = f'<tool_call>\n{{"name": "get_weather", "arguments": {arguments}}}\n</tool_call>'
        assert f"<assistant>{written}\n" in prompt
        assert '<user><tool_response>\n{"celsius": 21}\n</tool_response>\n\nAnd in Rome?\n<assistant>' in prompt
        again = await stream(stub.Generate(ask))
        assert again.result is not None
        assert again.result.usage.prompt_tokens == counted.count.prompt_tokens
        # Spaced otherwise, the same call makes the same prompt; a failed result reads as OpenAI's convention has it.
        ask.messages[1].tool_calls[0].arguments = json.dumps(json.loads(call.arguments), indent=4)
        ask.messages[2].is_error = True
        ask.messages[2].content = "no such city"
        respaced = await stub.CountTokens(pb.CountTokensRequest(request=ask, include_tokens=True))
        prompt = b"".join(token.piece for token in respaced.count.tokens).decode()
        assert f"<assistant>{written}\n" in prompt
        assert "<tool_response>\nError: no such city\n</tool_response>" in prompt
