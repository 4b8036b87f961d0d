"""PullModel on a slow link (an outside tester's findings): progress shows bytes as they arrive, not once per read of
the library's size, and the bytes that arrived before a pull failed are in the partial file for the next pull to resume
from. The loopback hub sends only what the test lets it, a count of bytes at a time."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest

from tests.conftest import rich_details
from tests.fakes.hub import FakeHub
from tests.pull import WAIT_SECONDS, destination, frames, partial_files, pull, pulling_server
from warpcore.v1 import models_pb2

PIECE = 10_000
"""Bytes the slow hub sends at a time: far fewer than any read the download might wait to fill."""


async def test_progress_shows_each_piece_of_a_slow_download_as_it_arrives(
    hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    """A 555,936-byte file sent at 160 KB/s had progress frames at 0, 262,144 and 524,288 bytes, 1.5 s apart: the
    download handed on what came a quarter MiB at a time. The hub sends the next piece only once the last shows."""
    pace = hub.pace = asyncio.Queue()
    async for _, stub in pulling_server(hub, models_root, interval=0):
        call = pull(stub)
        for sent in range(PIECE, 5 * PIECE + 1, PIECE):
            pace.put_nowait(PIECE)
            done = 0
            while done < sent:
                frame = await asyncio.wait_for(call.read(), WAIT_SECONDS)
                assert isinstance(frame, models_pb2.PullModelResponse)
                done = frame.progress.bytes_done
            assert done == sent
        pace.put_nowait(len(gguf))
        _, pulled = await frames(call)
        assert pulled.size_bytes == len(gguf)
        assert destination(models_root).read_bytes() == gguf


async def test_the_bytes_a_failed_pull_received_are_resumed_from(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    """A hub that stalled after 100,000 bytes failed the pull with HUB_UNAVAILABLE, "a retried pull resumes", and left a
    partial file of 0 bytes: what came was still waiting for a quarter MiB to fill. Here the link drops after them and
    the CDN is down from then on (the download's own retry fails too)."""
    pace = hub.pace = asyncio.Queue()
    pace.put_nowait(100_000)
    pace.put_nowait(None)
    hub.unavailable_after = 1
    async for _, stub in pulling_server(hub, models_root):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await frames(pull(stub))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(failed.value)[0].reason == "HUB_UNAVAILABLE"
        (partial,) = partial_files(models_root)
        assert partial.read_bytes() == gguf[:100_000]
        # The download's own retry asked for the rest, as the next pull does.
        assert [download.range for download in hub.downloads] == [None, "bytes=100000-"]
        hub.pace, hub.unavailable_after = None, None
        _, pulled = await frames(pull(stub))
        assert hub.downloads[-1].range == "bytes=100000-"
        assert pulled.sha256 == hashlib.sha256(gguf).hexdigest()
        assert destination(models_root).read_bytes() == gguf
        assert not partial_files(models_root)
