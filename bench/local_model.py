"""Local model, greedy, same prompts: warpcore against llama-cpp-python, llama_cpp.server and xllamacpp, 1-8 streams."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench.local_contenders import Contender, StreamTiming, Trial, Workload, contenders
from bench.local_report import NAME, report

# Story openings for a base model, which continues them for far longer than max_tokens.
OPENINGS = (
    "The lighthouse keeper had not spoken to anyone in three years, until the morning a bottle",
    "In the spring of 1887 a young engineer arrived in the valley with a trunk full of drawings",
    "Nobody in the village could remember who had planted the orchard on the hill, but every autumn",
    "The last train out of the city left at midnight, and Mara was determined to be on it because",
    "When the old clockmaker died, he left his shop to the one apprentice who had never",
    "The expedition had been walking across the ice for eleven days when the radio finally",
    "My grandmother kept a locked wooden box under her bed, and on the day she turned ninety",
    "The market opened before sunrise, and by the time the first boats came in, the fish sellers",
)


def prompt(round_index: int, stream: int) -> str:
    # A distinct opening line per request, so no contender serves a prompt from its prefix cache.
    number = round_index * 16 + stream + 1
    return f"Chapter {number}\n\n{OPENINGS[(round_index + stream) % len(OPENINGS)]}"


async def bounded(
    contender: Contender, streams: list[Coroutine[Any, Any, StreamTiming]], seconds: float | None = None
) -> list[StreamTiming]:
    """All of a round's streams, or an error naming the contender that hung (rather than a silent test timeout)
    after `seconds` (default: enough for short prompts)."""
    seconds = seconds or 60 + len(streams) * 30
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.gather(*streams)
    except TimeoutError:
        raise RuntimeError(f"{contender.name}: {len(streams)} streams not done after {seconds} s") from None


async def measure(workload: Workload, logs: Path) -> tuple[list[str], dict[tuple[str, int], list[Trial]]]:
    """Every contender at every concurrency level, contenders interleaved round by round in a rotating order."""
    lineup = contenders(workload)
    trials: dict[tuple[str, int], list[Trial]] = defaultdict(list)
    try:
        await asyncio.gather(*(contender.start(logs) for contender in lineup))
        for contender in lineup:  # first-call costs (buffers, caches) stay out of the figures
            await bounded(contender, [contender.generate(prompt(99, 0), 4)])
        for level in workload.levels:
            rounds = workload.single_stream_rounds if level == 1 else workload.rounds
            for round_index in range(rounds):
                prompts = [prompt(round_index, stream) for stream in range(level)]
                for offset in range(len(lineup)):
                    contender = lineup[(round_index + offset) % len(lineup)]
                    started = time.perf_counter()
                    streams = await bounded(contender, [contender.generate(t, workload.max_tokens) for t in prompts])
                    trials[contender.name, level].append(Trial(list(streams), time.perf_counter() - started))
                print(f"{level} streams, round {round_index + 1}/{rounds} done", flush=True)
    finally:
        await asyncio.gather(*(contender.stop() for contender in lineup), return_exceptions=True)
    return [contender.name for contender in lineup], trials


def smoke_workload(models: Path) -> Workload:
    from tests.tiny_model import CONTEXT, write_tiny_model

    path = write_tiny_model(models / "tiny.gguf")
    return Workload(
        path, models, path.name, CONTEXT, max_tokens=8, levels=(1, 4), rounds=1, single_stream_rounds=1, slots=4
    )


def gemma_workload(arguments: argparse.Namespace) -> Workload:
    from warpcore.server.embedded import install_embedded_model

    models = Path(arguments.models_path)
    name = install_embedded_model(models)
    return Workload(
        models / name,
        models,
        name,
        context=4096,
        max_tokens=arguments.max_tokens,
        levels=tuple(arguments.levels),
        rounds=arguments.rounds,
        single_stream_rounds=arguments.single_stream_rounds,
        slots=arguments.slots,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for local_model.json and its charts")
    parser.add_argument("--smoke", action="store_true", help="the tiny test model, 8 tokens, one round: seconds")
    default_models = os.environ.get("MODELS_PATH", str(Path.home() / ".cache" / "warpcore" / "models"))
    parser.add_argument("--models-path", default=default_models)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--single-stream-rounds",
        type=int,
        default=11,
        help="rounds at 1 stream (cheap, and its ratio has a tight target: its median needs many pairs)",
    )
    parser.add_argument("--slots", type=int, default=4, help="sequences decoded together by the batching contenders")
    arguments = parser.parse_args()
    if arguments.levels[0] != 1 or sorted(set(arguments.levels)) != arguments.levels:
        parser.error("--levels must be increasing and start at 1: one stream is the baseline of every ratio")
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-") as scratch:
        workload = smoke_workload(Path(scratch)) if arguments.smoke else gemma_workload(arguments)
        names, trials = asyncio.run(measure(workload, Path(scratch)))
    result = report(workload, names, trials, arguments.out)
    print(f"wrote {result.write(arguments.out, NAME)}")


if __name__ == "__main__":
    main()
