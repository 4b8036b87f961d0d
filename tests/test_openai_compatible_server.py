"""The OpenAI backend against an OpenAI-compatible server nobody here wrote: llama-cpp-python's own."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest

from tests.conftest import collect, load_tiny
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

UPSTREAM_ALIAS = "tiny-upstream"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def llama_cpp_server(models_path: Path) -> AsyncIterator[str]:
    """llama_cpp.server serving the tiny model; yields its OpenAI base URL once it answers."""
    port = free_loopback_port()
    model_file = models_path / "hf" / "warpcore" / "tiny" / "tiny.gguf"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--model_alias", UPSTREAM_ALIAS),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "false"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx2.AsyncClient(timeout=2) as http, asyncio.timeout(60):
            while process.returncode is None:
                try:
                    if (await http.get(f"{base_url}/models")).status_code == 200:
                        break
                except httpx2.TransportError:
                    await asyncio.sleep(0.1)
        assert process.returncode is None, "llama_cpp.server exited"
        yield base_url
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def test_openai_backend_streams_from_llama_cpp_server(stub: Stub, llama_cpp_server: str) -> None:
    listed = await stub.ListModels(
        pb.ListModelsRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            backend_config=pb.BackendConfig(api=pb.ApiConfig(api_key="unused", base_url=llama_cpp_server)),
        )
    )
    assert [model.id for model in listed.models] == [UPSTREAM_ALIAS]
    await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            model=UPSTREAM_ALIAS,
            model_id="remote",
            backend_config=pb.BackendConfig(api=pb.ApiConfig(api_key="unused", base_url=llama_cpp_server)),
        )
    )
    await load_tiny(stub, model_id="local")

    def chat(model_id: str) -> pb.GenerateRequest:
        return pb.GenerateRequest(
            model_id=model_id,
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello there")],
            options=pb.GenerationOptions(max_tokens=12, temperature=0),
        )

    remote_text, remote_result = await collect(stub.Generate(chat("remote")))
    local_text, _ = await collect(stub.Generate(chat("local")))
    # The same file, the same chat template, greedy decoding: the same words either way.
    assert remote_text.split() == local_text.split()
    assert remote_result.finish_reason == pb.FINISH_REASON_LENGTH
    # llama_cpp.server sends no usage chunk in streams, so usage stays zero (unknown) here.
