"""An API key given as a model's id or name is refused before any work, without quoting it: every caller is shown the
models' ids and names (ListModels, /v1/models, the metrics' labels). A tester's finding: `warpcore load --api-key-env
KEY --id g3 "$KEY"` loaded, and the key was listed to every caller and labelled the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import AccessLines, failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.hosted import api_config, backend_of, key_of
from tests.http_errors_support import anthropic_failure, openai_failure
from warpcore.server.adapters.redaction import holds_key, redact_key_shapes
from warpcore.server.doors import Doors
from warpcore.server.preload import ConfigError, read_preload
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

KEY_SHAPED = "sk-proj-Qw7ZtLm2RbXc9VhNk4FsT8"
"""Shaped as OpenAI's keys are, and no key the tests' upstreams are called with."""
OWN_KEY = "Zr7Lx2Vb9Nh4Kc6Pj1DfOwnKey"
"""A key of no vendor's shape: only the call's own key can tell it is one."""


@pytest.mark.parametrize(
    "text",
    [
        KEY_SHAPED,
        "sk-test-SECRETSECRET1234",
        "sk-ant-api03-Kd8_Hq2Wm5Zt9Rx3Lv7Nb4Fc6Gj1Ps0-Yu2TeAA",
        "sk-Qw7ZtLm2RbXc9VhNk4FsQw7ZtLm2RbXc9VhNk4FsQw7Z",
        "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
        f"hf:owner/repo:{KEY_SHAPED}.gguf",
        f"gpt-4o-{KEY_SHAPED}",
        # After a letter-less joint, as an upstream's tool-call or request id built on a key (an outside sweep's
        # finding: `call_sk-...` and `req_sk-...` passed whole to the caller and the access log).
        "call_sk-proj-Qx_7hG-aB3dEf6hIj9kLm2nOp5qRs_T3BlbkFJ-zz9_Yy8",
        # A base64url random part whose `-` and `_` leave no long run: its length and its mix of characters show it.
        "sk-ant-api03-J0RlgL_KOmxgJTeKdN-nFRIBXuD_L7DxtpYlSXpfKt-HF4vUCsMe_hGAkWvj7FAc9-QeWJKAA",
    ],
)
def test_a_key_is_seen_in_an_id(text: str) -> None:
    assert holds_key(text)


@pytest.mark.parametrize(
    "text",
    [
        "gpt-4o",
        "claude-sonnet-4-5",
        "claude-3-5-sonnet-20241022",
        "text-embedding-3-large",
        "hf:owner/repo:file.gguf",
        "hf:unsloth/Qwen2.5-Coder-32B-Instruct-GGUF:Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf",
        "ft:gpt-4o-mini-2024-07-18:my-org:custom:9AbCdEfGh",
        # sk- or key- that does not start a word, or with too little after it to be a key.
        "task-Qw7ZtLm2RbXc9VhNk4FsT8",
        "monkey-business-7b",
        "sk-tiny",
        # No run of letters and digits both, as a key's random part has: the words and versions of a name. Neither
        # refused nor hidden in the log (a tester's finding: such an id was loaded and listed while the log hid it).
        "sk-roberta-base-finetuned-ner-v2",
        "key-phrase-extractor",
        "sk-abcdefghijklmnopqrstuvwxyz",
        "sk-1234567890123456789",
    ],
)
def test_a_models_name_is_no_key(text: str) -> None:
    assert not holds_key(text)
    assert redact_key_shapes(text) == text  # nor does the log hide it


def test_a_name_holding_the_calls_own_key_is_seen_unless_the_key_is_a_stand_in() -> None:
    assert holds_key(f"m-{OWN_KEY}", OWN_KEY)
    # "ollama" is what a compatible server takes as a key, and no secret; its models may bear its name.
    assert not holds_key("ollama/llama3", "ollama")


def assert_refused_unquoted(error: grpc.aio.AioRpcError, field: str, *secrets: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]
    assert "looks like an API key" in (error.details() or "")
    assert not [secret for secret in secrets if secret in str(error)]


@pytest.mark.parametrize(
    ("model", "model_id", "api_key", "field"),
    [
        ("gpt-4o", OWN_KEY, OWN_KEY, "model_id"),
        (OWN_KEY, "m", OWN_KEY, "model"),
        ("gpt-4o", KEY_SHAPED, None, "model_id"),
        (KEY_SHAPED, "m", None, "model"),
    ],
)
async def test_a_load_naming_a_key_is_refused_before_any_call(
    stub: Stub, upstream: FakeUpstream, model: str, model_id: str, api_key: str | None, field: str
) -> None:
    config = api_config(upstream, api_key=api_key or key_of(upstream))
    request = pb.LoadModelRequest(backend=backend_of(upstream), model=model, model_id=model_id, backend_config=config)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert_refused_unquoted(raised.value, field, OWN_KEY, KEY_SHAPED)
    assert upstream.requests == []
    listed = await stub.ListModels(pb.ListModelsRequest())
    assert list(listed.models) == []


async def test_a_local_load_or_a_generation_naming_a_key_is_refused(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=f"{KEY_SHAPED}.gguf"))
    assert_refused_unquoted(raised.value, "model", KEY_SHAPED)
    _, error = await failed_stream(stub.Generate(pb.GenerateRequest(model_id=KEY_SHAPED, prompt="hi")))
    assert_refused_unquoted(error, "model_id", KEY_SHAPED)


async def test_the_http_doors_refuse_a_model_naming_a_key(doors: Doors) -> None:
    for failure in (await openai_failure(doors, model=KEY_SHAPED), await anthropic_failure(doors, model=KEY_SHAPED)):
        assert failure.status_code == 400
        assert "looks like an API key" in failure.message
        assert KEY_SHAPED not in failure.response.text
    assert (await openai_failure(doors, model=KEY_SHAPED)).param == "model"


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        (f'id = "{KEY_SHAPED}"\nmodel = "gpt-4o"', "models[0].id"),
        ('id = "gpt"\nmodel = "m-' + OWN_KEY + '"', "models[0].model"),
    ],
)
def test_a_config_entry_naming_a_key_stops_the_start_naming_its_key(tmp_path: Path, entry: str, where: str) -> None:
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "openai"\n{entry}\n[models.api]\napi_key_env = "TEST_KEY"\n')
    with pytest.raises(ConfigError) as raised:
        read_preload(config, {"TEST_KEY": OWN_KEY})
    assert f"{where}: " in str(raised.value)
    assert "looks like an API key" in str(raised.value)
    assert OWN_KEY not in str(raised.value)
    assert KEY_SHAPED not in str(raised.value)


@pytest.mark.parametrize(("model", "model_id"), [("gpt-4o", f"x-{OWN_KEY}"), (f"m-{OWN_KEY}", "")])
async def test_the_access_line_of_a_load_naming_its_own_key_does_not_print_it(
    stub: Stub, upstream: FakeUpstream, access_lines: AccessLines, model: str, model_id: str
) -> None:
    """A tester's finding: the load was refused, but its access line said `model=x-<key>`; a key-shaped one says
    `[redacted]` there already."""
    config = api_config(upstream, api_key=OWN_KEY)
    request = pb.LoadModelRequest(backend=backend_of(upstream), model=model, model_id=model_id, backend_config=config)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert_refused_unquoted(raised.value, "model_id" if model_id else "model", OWN_KEY)
    assert await access_lines.next() == ("LoadModel", f"{(model_id or model)[:2]}[redacted]", "INVALID_ARGUMENT")
    assert not [record for record in access_lines.records if OWN_KEY in str(record.__dict__)]
