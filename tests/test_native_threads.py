"""llama.cpp's OpenMP teams: a model keeps at most one, its batching thread's, and none once idle.

libgomp makes every team's threads sleep at each barrier instead of spinning once the process holds more of its
threads than there are CPUs, which slows every decode step (adapters/llama/native_threads.py). Loading
(whose batch-size probe decodes), and embedding, must leave no team behind; nor must a model that does nothing,
beside one that works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_MODEL
from warpcore.server.adapters.llama.native_threads import COMPUTE_NICENESS

# Counts the process's threads that Python did not start: OpenMP's (and any a library started at import, counted
# before and after, so only the change matters).
_COUNTING = """
import asyncio, os, sys, threading, time
from warpcore.server.adapters.llama import scheduler
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.core.domain import GenerationParams, LocalSettings
from warpcore.server.core.embeddings import EmbedParams

def native_threads() -> int:
    python = {thread.native_id for thread in threading.enumerate()}
    return sum(int(task) not in python for task in os.listdir("/proc/self/task"))

def settle(before: int, most: int) -> int:
    # A team's threads leave on their own after its thread ends, with nothing to wait on: look until they are gone.
    deadline = time.monotonic() + 10
    while native_threads() - before > most and time.monotonic() < deadline:
        time.sleep(0.01)
    return native_threads() - before

async def text(model: LlamaCppAdapter) -> str:
    params = GenerationParams(prompt="the", messages=(), max_tokens=4, temperature=0.0)
    return "".join([getattr(event, "text", "") async for event in model.generate(params, threading.Event())])
"""

_SCRIPT = (
    _COUNTING
    + """
async def main() -> None:
    env = {"MODELS_PATH": sys.argv[1]}
    before = native_threads()
    generator = LlamaCppAdapter(LocalSettings(threads=2, parallel=2), env)
    embedder = LlamaCppAdapter(LocalSettings(threads=2, embedding=True), env)
    await generator.load(sys.argv[2], 256)
    await embedder.load(sys.argv[2], 256)
    await text(generator)
    await embedder.embed(EmbedParams(inputs=("the cat",)))
    print(settle(before, 1))
    await generator.close()
    await embedder.close()

asyncio.run(main())
"""
)


_IDLE_SCRIPT = (
    _COUNTING
    + """
async def main() -> None:
    scheduler.IDLE_SECONDS = 0.2
    env = {"MODELS_PATH": sys.argv[1]}
    before = native_threads()
    working, resting = (LlamaCppAdapter(LocalSettings(threads=2), env) for _ in range(2))
    await working.load(sys.argv[2], 256)
    await resting.load(sys.argv[2], 256)
    first = await text(working)
    await text(resting)
    after_both = settle(before, 0)  # both idle: no team left
    again = await text(working)  # a new batching thread, a new team; none beside it
    print(after_both, native_threads() - before, again == first)
    await working.close()
    await resting.close()

asyncio.run(main())
"""
)


_PRIORITY_SCRIPT = (
    _COUNTING
    + """
async def main() -> None:
    env = {"MODELS_PATH": sys.argv[1]}
    imported = {int(task) for task in os.listdir("/proc/self/task")}  # threads a library started as it was imported
    model = LlamaCppAdapter(LocalSettings(threads=2), env)
    await model.load(sys.argv[2], 256)
    await text(model)  # its batching thread idles on for IDLE_SECONDS, its team beside it
    python = {thread.native_id: thread.name for thread in threading.enumerate()}
    nice = {int(task): os.getpriority(os.PRIO_PROCESS, int(task)) for task in os.listdir("/proc/self/task")}
    batching = [nice[task] for task, name in python.items() if name == "llama-cpp-batch"]
    team = [value for task, value in nice.items() if task not in python and task not in imported]
    print(nice[threading.main_thread().native_id], batching, team)
    await model.close()

asyncio.run(main())
"""
)


def test_llama_cpps_computing_threads_yield_to_the_event_loop(models_path: Path) -> None:
    """The batching thread and its OpenMP team run nicer than the event loop's thread, which therefore takes a core
    from a decode step at once to write a token's frame."""
    main, batching, team = run_counting(_PRIORITY_SCRIPT, models_path).split(maxsplit=2)
    niced = min(int(main) + COMPUTE_NICENESS, 19)  # Linux's highest niceness: a suite run under `nice` reaches it
    assert batching == f"[{niced}]"
    assert team == f"[{niced}]"  # threads=2: one OpenMP thread beside the batching thread


def run_counting(script: str, models_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(models_path), TINY_MODEL],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_loaded_model_keeps_one_openmp_team_after_loading_generating_and_embedding(models_path: Path) -> None:
    # Two threads per team: the batching thread (a Python thread) and one OpenMP thread beside it; none once the
    # batching thread has ended, idle.
    assert int(run_counting(_SCRIPT, models_path)) <= 1


def test_an_idle_model_keeps_no_openmp_team_beside_one_that_works(models_path: Path) -> None:
    after_both, while_one_works, same_text = run_counting(_IDLE_SCRIPT, models_path).split()
    assert int(after_both) == 0
    assert int(while_one_works) <= 1  # the working model's team alone (gone already if it idled meanwhile)
    assert same_text == "True"  # a new batching thread, the same greedy text
