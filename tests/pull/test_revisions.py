"""PullModel's revisions: a file already on disk is kept as it stands when no revision is asked for, and checked
against the hub's SHA-256 of the revision asked for, which replaces it when it is another revision's."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fakes.hub import FakeHub
from tests.pull import destination, frames, partial_files, pull

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_a_revision_asked_for_replaces_another_revisions_file_and_keeps_its_own(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    newer = gguf + b"\0" * 1024  # another revision's file: other bytes, another SHA-256
    hub.add("acme/tiny-GGUF", "tiny-q8.gguf", newer, revision="v2")
    await frames(pull(stub))  # main's file lands
    # Asked for v2: the file on disk is main's, so v2's replaces it.
    _, pulled = await frames(pull(stub, revision="v2"))
    assert (pulled.already_present, pulled.sha256, pulled.size_bytes) == (
        False,
        hashlib.sha256(newer).hexdigest(),
        len(newer),
    )
    assert destination(models_root).read_bytes() == newer
    assert not partial_files(models_root)
    # Asked for v2 again: that revision's file is there, checked, and nothing is downloaded.
    _, again = await frames(pull(stub, revision="v2"))
    assert (again.already_present, again.sha256) == (True, hashlib.sha256(newer).hexdigest())
    assert len(hub.downloads) == 2
    # Asked for no revision: the file on disk stands, unchecked, and the hub is not asked.
    heads = len(hub.heads)
    _, unasked = await frames(pull(stub))
    assert (unasked.already_present, unasked.sha256) == (True, "")
    assert len(hub.heads) == heads
    # Asked for main: back to main's file.
    _, main = await frames(pull(stub, revision="main"))
    assert (main.already_present, main.sha256) == (False, hashlib.sha256(gguf).hexdigest())
    assert destination(models_root).read_bytes() == gguf
