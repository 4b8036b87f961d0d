"""PullModel into a MODELS_PATH the server may not write (an outside tester's findings: a server run as `nobody` over
root's folders answered INTERNAL, its log a PermissionError from making the model's folder; into a folder already
there, it spoke of a partial file that is not a regular file, MODEL_PATH_UNREADABLE, where there was none). The
server runs as a process of its own, held to the folders' modes even when the tests run as root (tests.any_user)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest

from tests.any_user import PREFIX
from tests.conftest import rich_details
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, frames, pull
from tests.server_process import serving_process
from warpcore.v1 import inference_pb2_grpc

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the capabilities dropped for root are Linux's")

NEW_MODEL = "hf:acme/new-GGUF:tiny-q8.gguf"
WRITE = "import sys; open(sys.argv[1], 'w')"


async def refused_here(folder: Path) -> bool:
    """Whether a process run as the server is run (PREFIX) is refused writing in `folder`."""
    probe = await asyncio.create_subprocess_exec(
        *PREFIX, sys.executable, "-c", WRITE, str(folder / "probe"), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await probe.communicate()
    return b"PermissionError" in stderr


def told(folder: str, model: str) -> str:
    return (
        f"this server cannot write in the folder {folder} under MODELS_PATH to pull {model!r} (Permission denied):"
        " give the server's user write access to MODELS_PATH, or point MODELS_PATH at a folder it can write"
    )


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
