"""The warpcore command's structured output and reasoning, end to end against the OpenAI fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli import warpcore
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from tests.test_tools_hosted_requests import ANSWER_SCHEMA
from warpcore.server.rpc.server import WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_generate_with_a_json_schema_file_and_reasoning_on_stderr(
    stub: Stub,
    openai_upstream: FakeOpenAI,
    target: str,
    tmp_path: Path,
) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script = Script(
        events=[{"reasoning_content": "Four is "}, {"reasoning_content": "small."}, {"content": '{"n": 4}'}]
    )
    schema_file = tmp_path / "answer.json"
    schema_file.write_text(json.dumps(ANSWER_SCHEMA))

    run = await warpcore(
        target, "generate", "--model", "m", "--json-schema", str(schema_file), "--show-reasoning", "n?"
    )

    assert run.code == 0, run.stderr
    assert json.loads(run.stdout) == {"n": 4}
    assert run.stderr.startswith("Four is small.\n")  # apart from the answer, undimmed when not a terminal
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA


async def test_an_answer_that_is_not_json_is_printed_then_a_failure(
    stub: Stub, openai_upstream: FakeOpenAI, target: str, tmp_path: Path
) -> None:
    """It was a Python traceback (json.JSONDecodeError) after the text."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(chunks=["four"])
    schema_file = tmp_path / "answer.json"
    schema_file.write_text(json.dumps(ANSWER_SCHEMA))
    run = await warpcore(target, "generate", "--model", "m", "--json-schema", str(schema_file), "n?")
    assert (run.code, run.stdout) == (1, "four\n")
    usage, failure = run.stderr.splitlines()
    assert usage.startswith("[11 prompt + 1 completion tokens, ")
    assert usage.endswith(", finish: stop]")
    # A tester's finding: the words named the SDK's response_format, an option the command does not have.
    assert (
        failure
        == "warpcore: the answer does not parse as --json-schema asks: Expecting value: line 1 column 1 (char 0)"
    )
    # In chat, the turn is forgotten; a tester's finding: its words began "OK:", the status of a call that succeeded.
    chat = await warpcore(target, "chat", "--model", "m", "--json-schema", str(schema_file), stdin="n?\n")
    assert "[turn failed, forgotten: the answer does not parse as --json-schema asks: " in chat.stderr


async def test_reasoning_stays_hidden_unless_asked(stub: Stub, openai_upstream: FakeOpenAI, target: str) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script = Script(events=[{"reasoning_content": "secret"}, {"content": "4"}])
    run = await warpcore(target, "generate", "--model", "m", "n?")
    assert run.stdout == "4\n"
    assert "secret" not in run.stderr


@pytest.mark.parametrize(
    ("content", "error"), [(None, "cannot read"), ("{oops", "is not JSON"), ("[1]", "JSON object")]
)
async def test_a_bad_schema_file_is_a_usage_error(tmp_path: Path, content: str | None, error: str) -> None:
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    run = await warpcore("127.0.0.1:1", "generate", "--json-schema", str(path), "hi")
    assert run.code == 2
    assert "--json-schema" in run.stderr
    assert error in run.stderr


async def test_every_reasoning_effort_and_verbosity_reach_openai(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    await load(stub, openai_upstream)
    run = await warpcore(target, "generate", "--model", "m", "--reasoning-effort", "xhigh", "--verbosity", "low", "n?")
    assert run.code == 0, run.stderr
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert (body["reasoning_effort"], body["verbosity"]) == ("xhigh", "low")
    refused = await warpcore(target, "generate", "--model", "m", "--verbosity", "loud", "n?")
    assert refused.code == 2
    assert "invalid choice: 'loud'" in refused.stderr


async def test_an_answer_cut_short_under_a_schema_is_printed_then_a_failure(
    stub: Stub, openai_upstream: FakeOpenAI, target: str, tmp_path: Path
) -> None:
    """A text cut by --max-tokens is no JSON, yet the command said it had succeeded."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(chunks=['{"n": ', "4"], finish_reason="length")
    schema_file = tmp_path / "answer.json"
    schema_file.write_text(json.dumps(ANSWER_SCHEMA))
    run = await warpcore(target, "generate", "--model", "m", "--json-schema", str(schema_file), "n?")
    assert (run.code, run.stdout) == (1, '{"n": 4\n')
    assert run.stderr == "warpcore: the answer ended with finish length before it was the JSON --json-schema asks for\n"
