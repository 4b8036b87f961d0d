"""PullModel into a MODELS_PATH the server may not write (an outside tester's findings: a server run as `nobody` over
root's folders answered INTERNAL, its log a PermissionError from making the model's folder; into a folder already
there, it spoke of a partial file that is not a regular file, MODEL_PATH_UNREADABLE, where there was none). The
server runs as a process of its own, held to the folders' modes even when the tests run as root (tests.any_user)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.any_user import PREFIX
from tests.conftest import rich_details
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, destination, frames, pull
from tests.server_process import serving_process
from warpcore.server.adapters.llama.partial_file import partial_path
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the capabilities dropped for root are Linux's")

NEW_MODEL = "hf:acme/new-GGUF:tiny-q8.gguf"
WRITE = "import sys; open(sys.argv[1], 'a')"


async def refused_here(folder: Path, name: str = "probe") -> bool:
    """Whether a process run as the server is run (PREFIX) is refused writing `name` in `folder`."""
    probe = await asyncio.create_subprocess_exec(
        *PREFIX, sys.executable, "-c", WRITE, str(folder / name), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await probe.communicate()
    return b"PermissionError" in stderr


def told(folder: str, model: str) -> str:
    return (
        f"this server cannot write in the folder {folder} under MODELS_PATH to pull {model!r} (Permission denied):"
        " give the server's user write access to MODELS_PATH, or point MODELS_PATH at a folder it can write"
    )


async def refusal(port: int, model: str = MODEL) -> tuple[grpc.StatusCode, str, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(inference_pb2_grpc.InferenceServiceStub(channel), model))
    return refused.value.code(), rich_details(refused.value)[0].reason, refused.value.details() or ""


async def test_a_folder_the_server_may_not_write_is_named_with_what_to_do(
    hub: FakeHub, gguf: bytes, models_root: Path, tmp_path: Path
) -> None:
    hub.add("acme/new-GGUF", "tiny-q8.gguf", gguf)
    owner, repo = models_root / "hf" / "acme", models_root / "hf" / "acme" / "tiny-GGUF"
    repo.mkdir(parents=True)
    for folder in (owner, repo):
        folder.chmod(0o555)
    try:
        if not await refused_here(repo):
            pytest.skip("no process here is refused by a folder's mode")
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        async with serving_process(PREFIX, models_root, "--allow-pull", **env) as (process, _, port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                refusals = []
                for model in (NEW_MODEL, MODEL):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await frames(pull(stub, model))
                    refusals.append(
                        (refused.value.code(), rich_details(refused.value)[0].reason, refused.value.details())
                    )
            process.kill()
            assert process.stderr is not None
            logged = [json.loads(line) for line in (await process.stderr.read()).splitlines()]
    finally:
        for folder in (owner, repo):
            folder.chmod(0o755)
    # A folder to make in one the server may not write; a folder there already that it may not write in.
    assert refusals == [
        (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_PATH_UNWRITABLE", told("hf/acme", NEW_MODEL)),
        (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_PATH_UNWRITABLE", told("hf/acme/tiny-GGUF", MODEL)),
    ]
    assert not [line for line in logged if line.get("level") == "error"], logged
    assert [path.name for path in owner.rglob("*")] == ["tiny-GGUF"]  # no folder made, no partial file


async def test_a_file_where_a_folder_belongs_is_named_not_an_internal_error(stub: Stub, models_root: Path) -> None:
    # An outside tester's finding: MODELS_PATH/hf a regular file answered INTERNAL, a NotADirectoryError in the log.
    (models_root / "hf").write_text("not a folder")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_PATH_UNWRITABLE"
    assert refused.value.details() == (
        "this server cannot make the folder hf/acme/tiny-GGUF under MODELS_PATH to pull"
        " 'hf:acme/tiny-GGUF:tiny-q8.gguf': hf is a file, not a folder; move it aside, or point MODELS_PATH elsewhere"
    )


async def test_a_partial_file_the_server_may_not_write_is_named_in_a_folder_it_may_write(
    hub: FakeHub, gguf: bytes, models_root: Path, tmp_path: Path
) -> None:
    # An outside tester's finding: the refusal told to give write access to a folder already world-writable.
    destination(models_root).parent.mkdir(parents=True)
    partial = partial_path(destination(models_root), hashlib.sha256(gguf).hexdigest())
    partial.write_bytes(gguf[:50_000])
    partial.chmod(0o444)  # its owner's, held to its mode, may not write it either
    for folder in (partial.parent, *partial.parent.parents[:3]):
        folder.chmod(0o777)
    if not await refused_here(partial.parent, partial.name):
        pytest.skip("no process here is refused by a file's mode")
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    async with serving_process(PREFIX, models_root, "--allow-pull", **env) as (_, _, port):
        assert await refusal(port) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "MODEL_PATH_UNWRITABLE",
            f"this server cannot write the partial file {partial.name} in the folder hf/acme/tiny-GGUF under"
            f" MODELS_PATH to pull {MODEL!r} (Permission denied): remove it (the pull then starts over), or give the"
            " server's user write access to it",
        )
    assert partial.read_bytes() == gguf[:50_000]
