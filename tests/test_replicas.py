"""Server processes behind one client: round-robin spreads the calls, and losing one fails none, not even a call it
was answering."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from warpcore.client import AsyncClient


async def start_replica(models_path: Path, **env: str) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--port", "0", "--no-default-model", "--grace", "0"),
        env={**os.environ, "MODELS_PATH": str(models_path), **env},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while line := (await process.stderr.readline()).decode():
            if match := re.search(r"serving on 127\.0\.0\.1:(\d+)", line):
                return process, int(match.group(1))
    raise AssertionError("a replica exited before serving")


@pytest.fixture
async def replicas(models_path: Path) -> AsyncIterator[list[tuple[asyncio.subprocess.Process, int]]]:
    started = list(await asyncio.gather(*(start_replica(models_path) for _ in range(3))))
    try:
        yield started
    finally:
        for process, _ in started:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_calls_spread_over_replicas_and_survive_losing_one(
    replicas: list[tuple[asyncio.subprocess.Process, int]],
) -> None:
    # Each replica loads the tiny model under its own id, so a listing says which replica answered.
    for index, (_, port) in enumerate(replicas):
        async with AsyncClient(f"127.0.0.1:{port}") as direct:
            await direct.load_model(TINY_MODEL, model_id=f"replica-{index}")
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in replicas)
    async with AsyncClient(target, max_retries=4, timeout=10) as client:
        answered = Counter([(await client.list_models())[0].id for _ in range(30)])
        assert set(answered) == {"replica-0", "replica-1", "replica-2"}
        assert min(answered.values()) >= 5  # round-robin, not one favourite

        async def keep_calling() -> Counter[str]:
            seen: Counter[str] = Counter()
            for _ in range(200):
                seen[(await client.list_models())[0].id] += 1
            return seen

        calling = asyncio.create_task(keep_calling())
        await asyncio.sleep(0.05)
        victim, _ = replicas[0]
        victim.kill()  # mid-run, no warning
        seen = await calling  # raises if any call failed
    assert sum(seen.values()) == 200
    assert {"replica-1", "replica-2"} <= set(seen)


class FirstListingHeld(FakeOpenAI):
    """Holds the first model listing asked of it until its asker goes away; `askers` gets each asker's key."""

    def __init__(self) -> None:
        super().__init__()
        self.askers: asyncio.Queue[str] = asyncio.Queue()
        self.held = False

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        await self.askers.put(request.headers["authorization"].removeprefix("Bearer "))
        if not self.held:
            self.held = True
            await asyncio.Event().wait()  # until the asker's connection is gone, which cancels this
        return await super()._list_models(request)


async def test_a_unary_call_whose_replica_dies_while_answering_it_is_answered_by_another(models_path: Path) -> None:
    """gRPC retries a call only until the response's headers come: when a unary call's went out as it began, a
    replica killed while it waited on its upstream failed that call UNAVAILABLE, with the other replica there."""
    async with FirstListingHeld() as upstream:
        keys = ["sk-replica-0", "sk-replica-1"]
        started = [
            await start_replica(models_path, OPENAI_API_BASE=upstream.base_url, OPENAI_API_KEY=key) for key in keys
        ]
        try:
            target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in started)
            async with AsyncClient(target, max_retries=4, timeout=30) as client:
                listing = asyncio.ensure_future(client.list_models("openai"))
                asked_first = await upstream.askers.get()
                victim, _ = started[keys.index(asked_first)]
                victim.kill()  # while it waits on its upstream for the call's answer
                models = await listing
            assert sorted(model.id for model in models) == sorted(FakeOpenAI.default_models)
            assert await upstream.askers.get() != asked_first  # the survivor answered
        finally:
            for process, _ in started:
                if process.returncode is None:
                    process.kill()
                await process.wait()
