"""A model's name replaced by a link out of MODELS_PATH while the model loads (after its path was checked, once
llama.cpp has begun to read it): what loads is still the file that was checked, its weights, vocabulary and
projector alike, never the file outside. The name is replaced inside llama.cpp's first read of it, the one point
between the check and a later read that a test can hold deterministically; every read goes through the same open
file, the first one included."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import handling
from tests.embeddings import embed, vectors
from tests.tiny_model import write_tiny_model
from tests.tiny_projector import write_tiny_projector
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

OUTSIDE_WORD = "warpcoreword"  # one token in the outside file's vocabulary, several in the checked file's


class _ReplaceOnFirstRead(logging.Handler):
    """Replaces each name by a link to its file outside (atomically, as `ln -sfn` then `mv -T` would) the first time
    llama.cpp says it has read a model file's metadata: on the thread that loads, inside llama.cpp's first read, so
    that every later read of the file by its name would be of the file outside."""

    def __init__(self, links: dict[Path, Path]) -> None:
        super().__init__(logging.DEBUG)
        self._links = links
        self.replaced = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.replaced or "loaded meta data" not in record.getMessage():
            return
        self.replaced = True
        for name, target in self._links.items():
            swap = name.with_name(f".{name.name}.swap")
            swap.symlink_to(target)
            swap.replace(name)


def load_request(model: str, model_id: str, kind: str) -> pb.LoadModelRequest:
    llama_cpp = pb.LlamaCppConfig(
        embedding=kind == "embedding" or None, mmproj=f"{Path(model).stem}-mmproj.gguf" if kind == "mmproj" else None
    )
    local = pb.LocalBackendConfig(llama_cpp=llama_cpp)
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id=model_id, backend_config=pb.BackendConfig(local=local)
    )


async def probe(stub: Stub, model_id: str, kind: str) -> object:
    """What the loaded vocabulary and weights make of a text: its vector, else its token count."""
    if kind == "embedding":
        return vectors(await embed(stub, [f"the {OUTSIDE_WORD}"], model_id=model_id))
    request = pb.GenerateRequest(model_id=model_id, prompt=f"the {OUTSIDE_WORD}")
    return (await stub.CountTokens(pb.CountTokensRequest(request=request, include_tokens=True))).count


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return {"MODELS_PATH": str(tmp_path / "models")}


@pytest.mark.parametrize("kind", ["generation", "embedding", "mmproj"])
async def test_a_name_replaced_by_a_link_outside_during_the_load_loads_the_checked_file(
    stub: Stub, tmp_path: Path, kind: str
) -> None:
    root, outside = tmp_path / "models", tmp_path / "outside"
    write_tiny_model(root / "race.gguf")
    # Another model outside: other weights, a larger vocabulary; and a projector made for neither model.
    write_tiny_model(outside / "secret.gguf", seed=8, extra_words=(OUTSIDE_WORD,))
    write_tiny_projector(root / "race-mmproj.gguf")
    write_tiny_projector(outside / "secret-mmproj.gguf", text_embedding=32)
    shutil.copyfile(root / "race.gguf", root / "same.gguf")
    shutil.copyfile(root / "race-mmproj.gguf", root / "same-mmproj.gguf")
    links = {root / "race.gguf": outside / "secret.gguf"}
    if kind == "mmproj":
        links[root / "race-mmproj.gguf"] = outside / "secret-mmproj.gguf"
    handler = _ReplaceOnFirstRead(links)
    with handling(logging.getLogger("llama.cpp"), handler):  # where llama.cpp's own log lines go (native_log.py)
        raced = (await stub.LoadModel(load_request("race.gguf", "raced", kind))).model
    assert handler.replaced
    assert all(name.is_symlink() for name in links)
    checked = (await stub.LoadModel(load_request("same.gguf", "checked", kind))).model
    assert raced.residency.memory_bytes == checked.residency.memory_bytes
    assert raced.context_size == checked.context_size
    assert await probe(stub, "raced", kind) == await probe(stub, "checked", kind)
    assert not opened_under(root)  # what llama.cpp read stays mapped, with no descriptor of ours left open
    # Loaded again now, the name is refused as any link out of MODELS_PATH is.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(load_request("race.gguf", "again", kind))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "outside MODELS_PATH" in (refused.value.details() or "")


def opened_under(root: Path) -> list[str]:
    """The files under `root` this process holds a descriptor of."""
    opened = []
    for descriptor in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            target = os.readlink(f"/proc/self/fd/{descriptor}")
            if Path(target).is_relative_to(root):
                opened.append(target)
    return opened


@pytest.mark.parametrize("broken", ["model", "mmproj"])
async def test_files_that_fail_to_load_are_not_left_open(stub: Stub, tmp_path: Path, broken: str) -> None:
    root = tmp_path / "models"
    if broken == "model":
        root.mkdir()
        (root / "broken.gguf").write_bytes(b"GGUF but not really" * 10)
    else:  # the model loads, then its projector, made for a narrower model, fails
        write_tiny_model(root / "broken.gguf")
        write_tiny_projector(root / "broken-mmproj.gguf", text_embedding=32)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(load_request("broken.gguf", "broken", "generation" if broken == "model" else "mmproj"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "/proc" not in (refused.value.details() or "")  # where the server read the file is not told
    if broken == "model":
        assert "'broken.gguf'" in (refused.value.details() or "")  # but the id is
    assert not opened_under(root)
