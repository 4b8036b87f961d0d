"""Pulling from the command line with a progress bar and from the SDK with progress events, and --allow-pull giving the
server a puller."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from tests.cli import finish, start, warpcore
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, pulling_server
from warpcore.client import AsyncClient, Client, NotFoundError, PulledModel, PullEvent, PullProgress
from warpcore.server.cli import serving_options
from warpcore.server.settings import parse_settings


async def test_the_cli_pulls_with_a_progress_bar(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    hub.hold_after = len(gguf) // 2  # a bar part-way, however fast the rest arrives
    async for server, _ in pulling_server(hub, models_root, interval=0):
        process = await start(f"127.0.0.1:{server.port}", "pull", MODEL)
        assert process.stderr is not None
        partway = await asyncio.wait_for(process.stderr.readuntil(b"%"), 30)
        hub.release.set()
        stdout, rest = await finish(process)
        assert process.returncode == 0, rest
        assert stdout.decode() == f"{MODEL}  {len(gguf)} bytes  sha256 {hashlib.sha256(gguf).hexdigest()}\n"
        bars = (partway + rest).decode().rstrip("\n").split("\r")[1:]
        percents = [int(match[1]) for bar in bars if (match := re.search(r"\] +(\d+)%", bar))]
        assert len(percents) == len(bars)
        assert percents[0] <= 50
        assert percents == sorted(percents)
        assert bars[-1].startswith(f"[{'#' * 30}] 100%  ")
        again = await warpcore(f"127.0.0.1:{server.port}", "pull", MODEL)
        assert again.stdout == f"{MODEL}  {len(gguf)} bytes  already present\n"
        denied = await warpcore(f"127.0.0.1:{server.port}", "pull", "hf:acme/missing:x.gguf")
        assert denied.code == 1
        assert denied.stderr.splitlines()[-1].startswith("warpcore: NOT_FOUND: the hub has no repository")


async def test_the_sdk_pulls_with_progress_events(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    async for server, _ in pulling_server(hub, models_root, interval=0):
        target = f"127.0.0.1:{server.port}"
        async with AsyncClient(target) as client:
            events = [event async for event in client.pull_model(MODEL)]
        *progress, done = events
        assert all(isinstance(event, PullProgress) for event in progress)
        assert isinstance(done, PulledModel)
        assert (done.model, done.size, done.sha256) == (MODEL, len(gguf), hashlib.sha256(gguf).hexdigest())
        assert isinstance(progress[-1], PullProgress)
        assert progress[-1].done == progress[-1].total == len(gguf)

        (*_, again) = await asyncio.to_thread(blocking_pull, target)
        assert isinstance(again, PulledModel)
        assert again.already_present
        async with AsyncClient(target) as client:
            with pytest.raises(NotFoundError):
                async for _ in client.pull_model("hf:acme/missing:x.gguf"):
                    pass


def blocking_pull(target: str) -> list[PullEvent]:
    with Client(target) as client:
        return list(client.pull_model(MODEL, revision="main"))


def test_allow_pull_gives_the_server_a_puller() -> None:
    assert serving_options(parse_settings([], {})).pulls is None
    assert serving_options(parse_settings(["--allow-pull"], {})).pulls is not None
