"""No model id reaches outside MODELS_PATH: not by `..`, absolute paths, hf: names or links, not even to open a file."""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_MODEL
from tests.hostile import CALL_TIMEOUT, HYPOTHESIS, Code
from tests.hostile.checks import check_failure, unary_outcome
from tests.tiny_model import write_tiny_model
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


IN_OPEN = 0x20
IN_ACCESS = 0x01


@contextmanager
def watch_opens(folder: Path) -> Iterator[Callable[[], list[str]]]:
    """inotify on `folder`: the returned function lists the opens and reads seen since, as 'mask:name'."""
    libc = ctypes.CDLL(None, use_errno=True)
    inotify = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if inotify < 0:
        pytest.skip(f"inotify is not available: {os.strerror(ctypes.get_errno())}")
    try:
        if libc.inotify_add_watch(inotify, os.fsencode(folder), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

        def events() -> list[str]:
            seen: list[str] = []
            while True:
                try:
                    data = os.read(inotify, 65536)
                except BlockingIOError:
                    return seen
                offset = 0
                while offset < len(data):
                    mask = int.from_bytes(data[offset + 4 : offset + 8], "little")
                    length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                    name = data[offset + 16 : offset + 16 + length].rstrip(b"\x00").decode(errors="replace")
                    seen.append(f"{mask:#x}:{name or '.'}")
                    offset += 16 + length

        yield events
    finally:
        os.close(inotify)


@pytest.fixture
def escape_routes(server_env: dict[str, str], tmp_path: Path) -> tuple[Path, Path, str]:
    """A private MODELS_PATH with the tiny model and links out of it; outside, a valid GGUF that must stay unread."""
    root, outside = tmp_path / "models", tmp_path / "outside"
    tiny = write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    outside.mkdir()
    shutil.copyfile(tiny, outside / "secret.gguf")  # a model llama.cpp would load: opening it would succeed
    (root / "escape.gguf").symlink_to(outside / "secret.gguf")
    (root / "escape_relative.gguf").symlink_to(Path("..") / "outside" / "secret.gguf")
    (root / "chain.gguf").symlink_to("escape.gguf")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "loop.gguf").symlink_to("loop.gguf")
    (root / "dangling.gguf").symlink_to(outside / "missing.gguf")
    (root / "hf" / "evil" / "repo").mkdir(parents=True)
    (root / "hf" / "evil" / "repo" / "model.gguf").symlink_to(outside / "secret.gguf")
    (root / "hf" / "evil" / "linked").symlink_to(outside, target_is_directory=True)
    server_env["MODELS_PATH"] = str(root)  # read when each adapter is made, so from the next call on
    return root, outside, os.path.relpath(outside, root)


OUTSIDE = "{outside}"  # replaced by the absolute path of the folder outside MODELS_PATH
UP = "{up}"  # replaced by the relative path from MODELS_PATH to that folder ("../outside")
ESCAPE_SEGMENTS = [
    *["..", ".", "", UP, "escape_dir", "secret.gguf", "escape.gguf", "chain.gguf", "hf", "evil", "linked"],
    *["warpcore", "tiny", "tiny.gguf"],
]
ESCAPE_IDS = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "/", "./", OUTSIDE + "/", "hf:evil/linked:", "hf:evil/repo:", "hf:warpcore/tiny:"]),
        st.lists(st.sampled_from(ESCAPE_SEGMENTS), min_size=1, max_size=6),
    ),
    st.sampled_from(
        [
            "escape.gguf",
            "escape_relative.gguf",
            "chain.gguf",
            "./escape.gguf",
            "escape_dir/secret.gguf",
            "escape_dir//secret.gguf",
            "escape_dir/./secret.gguf",
            "hf:evil/repo:model.gguf",
            "hf/evil/repo/model.gguf",
            "hf:evil/linked:secret.gguf",
            "hf/evil/linked/secret.gguf",
            "loop.gguf",
            "dangling.gguf",
            OUTSIDE + "/secret.gguf",
            UP + "/secret.gguf",
            "hf/warpcore/tiny/../../../" + UP + "/secret.gguf",
            "hf:warpcore/tiny:../../../" + UP + "/secret.gguf",
            "hf:evil/repo:" + OUTSIDE + "/secret.gguf",
            "escape.gguf\x00",
            "escape_dir/secret.gguf\x00.gguf",
        ]
    ),
)


def _file_named(root: Path, model: str) -> Path:
    """The file a model id names under `root`, by the README's rule."""
    if model.startswith("hf:"):
        repo, _, filename = model.removeprefix("hf:").partition(":")
        return root / "hf" / repo / filename
    return root / model


@settings(HYPOTHESIS, max_examples=80)
@given(template=ESCAPE_IDS)
@example(template="escape.gguf")
@example(template=OUTSIDE + "/secret.gguf")
@example(template=UP + "/secret.gguf")
@example(template="hf:evil/linked:secret.gguf")
@example(template="hf:warpcore/tiny:tiny.gguf")  # the legitimate model loads
@example(template="hf/warpcore/tiny/../tiny/tiny.gguf")
async def test_no_model_id_reaches_outside_models_path(
    stub: Stub, escape_routes: tuple[Path, Path, str], template: str
) -> None:
    root, outside, up = escape_routes
    model = template.replace(OUTSIDE, str(outside)).replace(UP, up)
    with watch_opens(outside) as opened:
        request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id="escape-attempt")
        error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
        listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP), timeout=CALL_TIMEOUT)
        assert opened() == [], f"{model!r} made the server open or read files outside MODELS_PATH"
    available = [entry.id for entry in listed.models if entry.state == pb.MODEL_STATE_AVAILABLE]
    assert available == [TINY_MODEL]  # no link out of MODELS_PATH is listed
    if error is None:  # only a name of the tiny model inside MODELS_PATH may load
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="escape-attempt"), timeout=CALL_TIMEOUT)
        assert _file_named(root, model).resolve() == root / "hf" / "warpcore" / "tiny" / "tiny.gguf", model
    else:
        # Refused before llama.cpp ran: a malformed or escaping id, no such file, or a link leading out.
        info = check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION})
        assert info.reason != "MODEL_LOAD_FAILED", model
        if str(outside) not in model:  # where a link leads is not revealed
            assert str(outside) not in (error.details() or ""), "a server path in the message"
