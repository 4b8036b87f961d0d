"""Every Python and `warpcore` command example in the README runs against a real server, so none can rot."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import load_tiny
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.test_embeddings import load_tiny_embedder
from tests.tool_wire import weather_model
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID
from warpcore.server.rpc.server import WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- not run[^\n]*-->\n)?```(python|sh)\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    """(kind, code) of every README example not marked `<!-- not run -->`: Python blocks, and CLI lines."""
    found: list[tuple[str, str]] = []
    for not_run, language, code in _BLOCK.findall(README.read_text()):
        if not_run:
            continue
        if language == "python":
            found.append(("python", code))
        else:
            found += [("sh", line) for line in code.splitlines() if re.match(r"^(echo .*\| )?warpcore ", line)]
    return found


@pytest.fixture
async def openai_env(server_env: dict[str, str]) -> AsyncIterator[FakeOpenAI]:
    """The server's OpenAI backend, from its environment, is a fake answering as `weather_model`."""
    async with FakeOpenAI() as upstream:
        upstream.respond = weather_model
        server_env.update(OPENAI_API_KEY=OPENAI_KEY, OPENAI_API_BASE=upstream.base_url)
        yield upstream


@pytest.mark.parametrize(("kind", "code"), examples(), ids=lambda value: value.splitlines()[0][:60])
async def test_readme_example_runs(
    openai_env: FakeOpenAI, server: WarpcoreServer, stub: Stub, kind: str, code: str
) -> None:
    # The tiny test model stands in for the embedded one under its id, so the examples run as written, fast.
    await load_tiny(stub, model_id=EMBEDDED_MODEL_ID)
    await load_tiny_embedder(stub, model_id=EMBEDDED_EMBEDDING_MODEL_ID)
    env = {
        **os.environ,
        "WARPCORE_TARGET": f"127.0.0.1:{server.port}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-c", code] if kind == "python" else ["bash", "-o", "pipefail", "-c", code]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.strip(), "the example printed nothing"
    assert b"Traceback" not in stderr
    posts = [r.body for r in openai_env.requests if r.method == "POST" and r.body is not None]
    if 'backend="openai"' in code:
        assert posts, "the example never reached the OpenAI backend"
    if "tools=" in code:  # the loop ran to its end: the last request sent the tool's result back
        assert posts[-1]["messages"][-1]["role"] == "tool"
        assert stdout.decode().strip() == "It is Sunny, 24 C in Paris."
