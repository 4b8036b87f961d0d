"""PullModel's refusals: what the hub does not have or will not give, a load during the pull of its file, names and
revisions that cannot be pulled, pulling not allowed, and a hub that cannot be reached."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_status import rpc_status

from tests.conftest import collect, greedy, rich_details, serving
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, WAIT_SECONDS, frames, pull, pulling_server
from warpcore.server.adapters.factory import hub_download
from warpcore.server.cli import startup_models
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.pulls import Pulls
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.mark.parametrize(
    ("model", "revision", "reason", "words"),
    [
        ("hf:acme/missing:tiny-q8.gguf", "", "HUB_REPO_NOT_FOUND", "the hub has no repository for"),
        (
            "hf:acme/tiny-GGUF:missing.gguf",
            "",
            "HUB_FILE_NOT_FOUND",
            "repository acme/tiny-GGUF has no file missing.gguf",
        ),
        (MODEL, "v9", "HUB_REVISION_NOT_FOUND", "the hub has no such revision for"),
    ],
)
async def test_what_the_hub_does_not_have_is_not_found(
    stub: Stub, model: str, revision: str, reason: str, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await frames(pull(stub, model, revision))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_details(missing.value)[0].reason == reason
    assert words in (missing.value.details() or "")


@pytest.mark.parametrize(
    ("status", "token"), [(401, "hf_test_token_0123456789"), (401, None), (403, "hf_test_token_0123456789")]
)
async def test_a_hub_refusing_the_server_says_which_token_to_set_not_to_retry(
    hub: FakeHub, models_root: Path, status: int, token: str | None
) -> None:
    # A mirror refusing the server's token answers the same to every retry: only the operator can change that.
    hub.refusal = status
    async for _, stub in pulling_server(hub, models_root, token=token):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich_details(refused.value)[0].reason == "HUB_UNAUTHORIZED"
    message = refused.value.details() or ""
    assert f"HTTP {status}" in message
    assert "set an HF_TOKEN allowed to read acme/tiny-GGUF on the server" in message
    assert ("refused 'hf:acme/tiny-GGUF:tiny-q8.gguf' to the server's HF_TOKEN" in message) == (token is not None)
    assert "retry" not in message
    assert "0123456789" not in message
    assert not hub.downloads


async def test_a_load_during_the_pull_of_its_file_says_to_wait_for_that_pull(
    hub: FakeHub, models_root: Path, gguf: bytes
) -> None:
    """So does a Generate naming a lazy model of that file (a tester's finding: it was NOT_FOUND, "pull it first")."""
    async for server, stub in pulling_server(hub, models_root):
        server.engine.declare(LoadSpec("lazy", BackendKind.LLAMA_CPP, MODEL, None, None, lazy=True))
        hub.hold_after = 1024 * 1024
        call = pull(stub)
        await hub.held.wait()
        load = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=MODEL)
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await stub.LoadModel(load)
        with pytest.raises(grpc.aio.AioRpcError) as lazy:
            await collect(stub.Generate(greedy("the world", 2, model_id="lazy")))
        for refused, field in ((early.value, "model"), (lazy.value, "model_id")):
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
            info, fields = rich_details(refused)
            assert (info.reason, fields) == ("PULL_IN_PROGRESS", [field])
            assert f"model file {MODEL!r} is being pulled now; wait for that pull to end" in (refused.details() or "")
        hub.release.set()
        _, done = await frames(call)
        assert done.size_bytes == len(gguf)
        assert (await stub.LoadModel(load)).model.id == MODEL
        _, result = await collect(stub.Generate(greedy("the world", 2, model_id="lazy")))
        assert result.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("model", "rule"),
    [
        ("hf:owner/repo.git:tiny.gguf", "(Repo_id cannot end by '.git')"),
        ("hf:a--b/repo:tiny.gguf", "(Cannot have -- or .. in repo_id)"),
        ("hf:a..b/repo:tiny.gguf", "(Cannot have -- or .. in repo_id)"),
        ("hf:owner/repo.:tiny.gguf", "cannot start or end with '-' or '.'"),
        (f"hf:owner/{'r' * 100}:tiny.gguf", "the maximum length is 96)"),
    ],
)
async def test_a_repository_name_the_hub_cannot_have_is_refused_alike_by_pull_load_and_preload(
    stub: Stub, hub: FakeHub, models_root: Path, tmp_path: Path, model: str, rule: str
) -> None:
    # Our own shape of hf: ids is looser than the hub's rules, which huggingface_hub checks (and words) for us.
    expected = f"model {model!r} names a repository the hub cannot have "
    with pytest.raises(grpc.aio.AioRpcError) as pulled:
        await frames(pull(stub, model))
    with pytest.raises(grpc.aio.AioRpcError) as loaded:
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model))
    for refused in (pulled.value, loaded.value):
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, fields = rich_details(refused)
        assert (info.reason, fields) == ("MODEL_ID_MALFORMED", ["model"])
        assert expected in (refused.details() or "")
        assert rule in (refused.details() or "")
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{model}"\nlazy = true\n')
    settings = parse_settings(["--config", str(config), "--models-path", str(models_root), "--allow-pull"], {})
    with pytest.raises(InvalidArgumentError) as preloaded:
        startup_models(settings, {})
    assert expected in preloaded.value.message
    assert rule in preloaded.value.message
    assert not hub.heads


def detail_kinds(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    return sorted(detail.TypeName().rsplit(".", 1)[-1] for detail in status.details)


async def test_pulling_is_off_unless_the_operator_allows_it(server: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        # Whatever the request: a tester's empty one was told "model is required", as though it could be pulled.
        for model, revision in ((MODEL, ""), ("", ""), ("hf:a--b/..:c.gguf", ""), (MODEL, "..")):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await frames(pull(stub, model, revision))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, (model, revision)
            # No field was checked: a BadRequest would tell the client to fix its input (a tester's finding).
            assert detail_kinds(denied.value) == ["ErrorInfo", "RequestInfo"], (model, revision)
            assert rich_details(denied.value)[0].reason == "PULL_DENIED"
        # LoadModel of a missing hf: file says how to get it.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=MODEL))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"warpcore pull {MODEL}" in (missing.value.details() or "")


@pytest.mark.parametrize("revision", [".", "..", "../main", "refs/../main", "refs//main", ".hidden", "main/"])
async def test_a_revision_that_is_no_ref_name_is_refused_before_the_hub_is_asked(
    stub: Stub, hub: FakeHub, revision: str
) -> None:
    """A tester's finding: ".." and "." went into the file's URL, which they moved (the hub was asked for another
    path, with the server's token), and the answer blamed the repository."""
    asked = len(hub.heads), len(hub.downloads)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub, MODEL, revision))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["revision"]
    assert (len(hub.heads), len(hub.downloads)) == asked


async def test_only_hf_models_can_be_pulled(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub, "local/file.gguf"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["model"]
    assert rich_details(refused.value)[0].reason == "MODEL_ID_MALFORMED"  # one reason, whichever rule it breaks


@pytest.mark.parametrize("model", ["local/file.gguf", "hf:acme/tiny-GGUF", "hf:../x:y.gguf"])
async def test_a_name_that_cannot_be_pulled_is_refused_before_any_frame(stub: Stub, model: str) -> None:
    call = pull(stub, model)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()  # the first read: no progress frame comes before the refusal
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["model"]


async def test_a_hub_that_cannot_be_reached_is_reported_at_once_with_its_cause(models_root: Path) -> None:
    # No network: the name of the hub does not resolve. The caller hears why, in the resolver's own words, without
    # the server's token, and without huggingface_hub's 23 s of retries first.
    host = "warpcore-hub.invalid"
    with pytest.raises(socket.gaierror) as unresolved:
        socket.getaddrinfo(host, 80)
    models_root.mkdir()  # noqa: ASYNC240 - a test's own folder, before the server starts
    token = "hf_test_token_0123456789"
    env = {"MODELS_PATH": str(models_root), "HF_ENDPOINT": f"http://{host}", "HF_TOKEN": token}
    async with (
        serving(env, ServingOptions(pulls=Pulls(hub_download(env)))) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await frames(stub.PullModel(models_pb2.PullModelRequest(model=MODEL), timeout=WAIT_SECONDS))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(failed.value)[0].reason == "HUB_UNAVAILABLE"
    message = failed.value.details() or ""
    assert f"ConnectError: {unresolved.value}" in message
    assert token[-8:] not in message
