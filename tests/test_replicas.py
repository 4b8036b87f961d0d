"""Three server processes behind one client: round-robin spreads the calls, and losing one fails none."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL
from warpcore.client import AsyncClient


async def start_replica(models_path: Path) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--port", "0", "--no-default-model", "--grace", "0"),
        env={**os.environ, "MODELS_PATH": str(models_path)},
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
