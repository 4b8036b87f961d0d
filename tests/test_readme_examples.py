"""Every Python and `warpcore` command example in the README runs against a real server, so none can rot."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.tool_wire import weather_model
from warpcore.server.core.domain import BackendKind, LoadSpec, LocalSettings
from warpcore.server.doors import Doors
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID

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
async def test_readme_example_runs(openai_env: FakeOpenAI, doors: Doors, kind: str, code: str) -> None:
    # The tiny test model stands in for the embedded one under its id, so the examples run as written, fast.
    await doors.engine.load(LoadSpec(EMBEDDED_MODEL_ID, BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    embedder = LocalSettings(embedding=True)
    await doors.engine.load(LoadSpec(EMBEDDED_EMBEDDING_MODEL_ID, BackendKind.LLAMA_CPP, TINY_MODEL, embedder, None))
    assert doors.http is not None
    door = f"http://127.0.0.1:{doors.http.port}"
    env = {
        **os.environ,
        "WARPCORE_TARGET": f"127.0.0.1:{doors.grpc.port}",
        # What the sidecar manifest gives the application, for the examples written against the vendors' SDKs.
        "OPENAI_BASE_URL": f"{door}/v1",
        "OPENAI_API_KEY": "unused",
        "ANTHROPIC_BASE_URL": door,
        "ANTHROPIC_API_KEY": "unused",
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
