"""`warpcore-server` as a real process, for the tests that start one (tests/test_server_process.py and the startup
and HTTP door tests): started on port 0, its log lines read as they come, the tiny model preloaded from a config
file, and the one line a server that cannot start prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import TINY_MODEL

CONFIG = f"""
[[models]]
id = "tiny"
backend = "llama_cpp"
model = "{TINY_MODEL}"
context_size = 32768

[models.local]
threads = 1
"""


async def start(models_path: Path, *arguments: str, **env: str) -> asyncio.subprocess.Process:
    return await start_after((), models_path, *arguments, **env)


async def start_after(
    prefix: tuple[str, ...], models_path: Path, *arguments: str, **env: str
) -> asyncio.subprocess.Process:
    """The server, run by the command `prefix` (tests.any_user.PREFIX, say; none: `start`)."""
    return await asyncio.create_subprocess_exec(
        *(*prefix, sys.executable, "-m", "warpcore.server", "--port", "0", "--no-default-model", *arguments),
        env={**os.environ, "MODELS_PATH": str(models_path), **env},
        stderr=asyncio.subprocess.PIPE,
    )


async def log_lines_until(process: asyncio.subprocess.Process, needle: str) -> list[dict[str, object]]:
    assert process.stderr is not None
    lines = []
    async with asyncio.timeout(60):
        while line := await process.stderr.readline():
            lines.append(json.loads(line))
            if needle in str(lines[-1].get("message")):
                return lines
    raise AssertionError(f"the server exited before logging {needle!r}: {lines}")


@contextlib.asynccontextmanager
async def serving_process(
    prefix: tuple[str, ...], models_path: Path, *arguments: str, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[dict[str, object]], int]]:
    """The server process (run by `prefix`) with JSON logs: the process, its log lines up to "serving on", and its
    gRPC port; killed afterwards if it is still running."""
    process = await start_after(prefix, models_path, "--log-format", "json", *arguments, **env)
    try:
        started = await log_lines_until(process, "serving on")
        yield process, started, int(str(started[-1]["message"]).split("127.0.0.1:")[1].split(",")[0])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def serving_tiny(
    models_path: Path, tmp_path: Path, *arguments: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[dict[str, object]], int]]:
    """`serving_process` with CONFIG preloaded."""
    config = tmp_path / "warpcore.toml"
    config.write_text(CONFIG)
    async with serving_process((), models_path, "--config", str(config), *arguments) as served:
        yield served


async def refusal(process: asyncio.subprocess.Process) -> tuple[int, list[str]]:
    """The exit status of a server that cannot start, and the lines it prints (killed if it serves)."""
    assert process.stderr is not None
    try:
        stderr = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
    finally:
        if not process.stderr.at_eof():  # still serving when the wait ran out
            process.kill()
    return await process.wait(), stderr.strip().splitlines()


async def one_line_failure(process: asyncio.subprocess.Process) -> list[str]:
    """The lines a server that cannot start prints, once it has exited with status 1."""
    status, lines = await refusal(process)
    assert status == 1
    return lines
