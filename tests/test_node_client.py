"""A Node.js client built from the .proto alone (@grpc/grpc-js) agrees with the Python stub on the real server."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import collect, greedy, load_tiny
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
from tests.tool_wire import weather_model
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "node" / "generate_client.mjs"
TOOL_LOOP = ROOT / "tests" / "node" / "tool_loop_client.mjs"
DOCUMENT = ROOT / "tests" / "node" / "document_client.mjs"


async def run_node(*args: str, script: Path = SCRIPT) -> tuple[int, str, str]:
    """Run the Node client without blocking the event loop, which serves the in-process server meanwhile."""
    node = shutil.which("node")
    assert node, "node is not on PATH (install Debian's nodejs/npm packages)"
    assert (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(), "the npm dependencies are missing: run `make setup`"
    process = await asyncio.create_subprocess_exec(
        node, str(script), *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(120):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_node_client_matches_python_stub(server: WarpcoreServer, stub: Stub) -> None:
    model_id = (await load_tiny(stub, model_id="tiny-node")).id
    prompt, max_tokens = "the world", 12

    code, stdout, stderr = await run_node(f"127.0.0.1:{server.port}", model_id, prompt, str(max_tokens))

    assert code == 0, stderr
    output = json.loads(stdout)
    assert model_id in output["models"]
    text, result = await collect(stub.Generate(greedy(prompt, max_tokens, model_id=model_id)))
    assert text.strip()
    assert output["text"] == text
    assert output["finish_reason"] == pb.FinishReason.Name(result.finish_reason) == "FINISH_REASON_LENGTH"
    assert output["completion_tokens"] == result.usage.completion_tokens == max_tokens


async def test_node_client_exits_non_zero_on_error(server: WarpcoreServer, stub: Stub) -> None:
    await load_tiny(stub)

    code, stdout, stderr = await run_node(f"127.0.0.1:{server.port}", "no-such-model")

    assert code == 1
    assert stdout == ""
    assert "NOT_FOUND" in stderr


async def test_node_tool_loop_written_from_the_proto(server: WarpcoreServer, stub: Stub) -> None:
    async with FakeOpenAI() as upstream:
        upstream.respond = weather_model
        await load(stub, upstream)

        code, stdout, stderr = await run_node(f"127.0.0.1:{server.port}", "m", script=TOOL_LOOP)

        assert code == 0, stderr
        output = json.loads(stdout)
        assert output["first_finish"] == "FINISH_REASON_TOOL_CALLS"
        call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert output["streamed"] == output["result_calls"] == [call]
        assert output["answer"] == "It is Sunny, 24 C in Paris."
        assert output["final_finish"] == "FINISH_REASON_STOP"
        first, second = [r.body for r in upstream.requests if r.method == "POST" and r.body is not None]
        assert first["tools"][0]["function"]["parameters"]["properties"]["city"]["maxLength"] == 64
        assert second["messages"][1]["tool_calls"][0]["id"] == "call_1"
        assert second["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C in Paris"}


async def test_node_client_sends_a_document_with_cache_breakpoints(server: WarpcoreServer, stub: Stub) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(32)) + b"\n%%EOF\n"
    async with FakeAnthropic() as upstream:
        await load(stub, upstream)
        code, stdout, stderr = await run_node(
            f"127.0.0.1:{server.port}", "m", base64.b64encode(pdf).decode(), script=DOCUMENT
        )

        assert code == 0, stderr
        output = json.loads(stdout)
        assert output == {"text": upstream.script.text, "finish": "FINISH_REASON_STOP", "documents": True}
        (body,) = [r.body for r in upstream.requests if r.method == "POST" and r.body is not None]
        assert body["system"] == [
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]
        assert body["messages"][0]["content"][1] == {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(pdf).decode()},
            "title": "report.pdf",
            "cache_control": {"type": "ephemeral"},
        }
