"""llama.cpp's OpenMP teams: a loaded model keeps one, its batching thread's, whatever else it computed.

libgomp makes every team's threads sleep at each barrier instead of spinning once the process holds more of its
threads than there are CPUs, which slows every decode step (adapters/llama/native_threads.py). Loading
(whose batch-size probe decodes), and embedding, must leave no team behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_MODEL

# Counts the process's threads that Python did not start: OpenMP's (and any a library started at import, counted
# before and after, so only the change matters).
_SCRIPT = """
import asyncio, os, sys, threading, time
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.core.domain import GenerationParams, LocalSettings
from warpcore.server.core.embeddings import EmbedParams

def native_threads() -> int:
    python = {thread.native_id for thread in threading.enumerate()}
    return sum(int(task) not in python for task in os.listdir("/proc/self/task"))

async def main() -> None:
    env = {"MODELS_PATH": sys.argv[1]}
    before = native_threads()
    generator = LlamaCppAdapter(LocalSettings(threads=2, parallel=2), env)
    embedder = LlamaCppAdapter(LocalSettings(threads=2, embedding=True), env)
    await generator.load(sys.argv[2], 256)
    await embedder.load(sys.argv[2], 256)
    params = GenerationParams(prompt="the", messages=(), max_tokens=4, temperature=0.0)
    async for _ in generator.generate(params, threading.Event()):
        pass
    await embedder.embed(EmbedParams(inputs=("the cat",)))
    # A team's threads leave on their own after its thread ends, with nothing to wait on: look until they are gone.
    deadline = time.monotonic() + 10
    while native_threads() - before > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(native_threads() - before)
    await generator.close()
    await embedder.close()

asyncio.run(main())
"""


def test_a_loaded_model_keeps_one_openmp_team_after_loading_generating_and_embedding(models_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(models_path), TINY_MODEL],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # Two threads per team: the batching thread (a Python thread) and one OpenMP thread beside it.
    assert int(done.stdout.strip().splitlines()[-1]) == 1, done.stderr[-2000:]
