"""Grammar-constrained local generation (JSON Schema output) against the same generation unconstrained: decode
tokens/s through warpcore's core engine and llama.cpp adapter, the two interleaved round by round."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.charts import bar_chart
from bench.harness import BenchResult, Table, Target, median

NAME = "grammar"
TARGET_RATIO = 0.9
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2100},
        "characters": {
            "type": "array",
            "maxItems": 8,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "role": {"enum": ["hero", "villain", "friend", "stranger"]},
                    "description": {"type": "string", "maxLength": 200},
                },
                "required": ["name", "age", "role", "description"],
            },
        },
    },
    "required": ["title", "year", "characters"],
}
PROMPT = "A story's title, year and cast, as JSON:\n"
CASES = ("unconstrained", "JSON Schema grammar")


@asynccontextmanager
async def engine_with(models: Path, model: str, parallel: int) -> AsyncIterator[Any]:
    from warpcore.server.adapters.factory import create_adapter
    from warpcore.server.core.domain import BackendKind, LoadSpec, LocalSettings
    from warpcore.server.core.engine import Engine
    from warpcore.server.core.limits import Limits
    from warpcore.server.core.metrics import Metrics
    from warpcore.server.core.policy import ApiOverridePolicy
    from warpcore.server.core.registry import ModelRegistry

    registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models)}))
    limits = Limits()
    engine = Engine(registry, limits, Metrics(limits), ApiOverridePolicy())
    try:
        settings = LocalSettings(parallel=parallel, threads=2)
        await engine.load(LoadSpec("bench", BackendKind.LLAMA_CPP, model, settings, 2048))
        yield engine
    finally:
        await registry.close()


async def decode_rate(engine: Any, constrained: bool, seed: int, max_tokens: int) -> tuple[float, int]:
    """Tokens per second after the first token, and the tokens generated."""
    from warpcore.server.core.domain import GenerationParams
    from warpcore.server.core.engine import GenerationResult
    from warpcore.server.core.tooling import ResponseFormat, ResponseFormatKind

    response_format = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, SCHEMA, name="story") if constrained else None
    params = GenerationParams(
        prompt=PROMPT, messages=(), max_tokens=max_tokens, temperature=0.8, seed=seed, response_format=response_format
    )
    first: float | None = None
    tokens = 0
    async for event in engine.generate("bench", params):
        first = first if first is not None else time.perf_counter()
        if isinstance(event, GenerationResult):
            tokens = event.finish.completion_tokens or 0  # a local model always counts
    if first is None or tokens < 2:
        raise RuntimeError("the generation gave fewer than two tokens")
    return (tokens - 1) / (time.perf_counter() - first), tokens


async def measure(models: Path, model: str, rounds: int, max_tokens: int) -> dict[str, list[tuple[float, int]]]:
    results: dict[str, list[tuple[float, int]]] = {case: [] for case in CASES}
    async with engine_with(models, model, 1) as engine:
        await decode_rate(engine, True, 0, 8)  # first-call costs stay out of the figures
        for round_index in range(rounds):
            order = CASES if round_index % 2 == 0 else CASES[::-1]
            for case in order:
                results[case].append(await decode_rate(engine, case != CASES[0], round_index, max_tokens))
    return results


def report(results: dict[str, list[tuple[float, int]]], model: str, out: Path) -> BenchResult:
    medians = {case: median(rate for rate, _ in runs) for case, runs in results.items()}
    ratio = medians[CASES[1]] / medians[CASES[0]]
    table = Table(
        caption="Decode tokens/s after the first token, one stream, same prompt and seeds (median of the rounds)",
        columns=["case", "median tok/s", "min tok/s", "max tok/s", "median tokens", "rounds"],
        rows=[
            [
                case,
                round(medians[case], 1),
                round(min(rate for rate, _ in runs), 1),
                round(max(rate for rate, _ in runs), 1),
                int(median(tokens for _, tokens in runs)),
                len(runs),
            ]
            for case, runs in results.items()
        ],
    )
    chart = bar_chart(out / f"{NAME}_rates.png", "Local decode rate (median)", "tokens/s", medians)
    description = (
        f"`{model}` through warpcore's core engine and llama.cpp adapter in one process (`parallel=1`, 2 threads),"
        " sampled at temperature 0.8 with the same seed per round, the two cases interleaved in alternating order."
        " The constrained case asks for output valid against a JSON Schema (nested objects, an array, bounded"
        " integers, an enum, bounded strings), enforced by llama.cpp's grammar sampler; the unconstrained case is"
        " the same prompt as free text. Tokens/s counts the tokens after the first over the time after it, so"
        " prompt processing is left out of both."
    )
    target = Target("grammar-constrained / unconstrained decode tok/s", round(ratio, 3), ">=", TARGET_RATIO, "x")
    return BenchResult(
        title="Grammar-constrained local generation",
        description=description,
        tables=[table],
        targets=[target],
        charts=[chart.name],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for grammar.json and its chart")
    parser.add_argument("--smoke", action="store_true", help="the tiny test model, two rounds of a few tokens")
    parser.add_argument("--rounds", type=int, default=9)
    default_models = os.environ.get("MODELS_PATH", str(Path.home() / ".cache" / "warpcore" / "models"))
    parser.add_argument("--models-path", type=Path, default=Path(default_models))
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpcore-grammar-") as scratch:
        if arguments.smoke:
            from tests.tiny_model import write_tiny_model

            models, model, rounds, max_tokens = Path(scratch), "tiny.gguf", 2, 24
            write_tiny_model(models / model)
        else:
            from warpcore.server.embedded import install_embedded_model

            models, rounds, max_tokens = arguments.models_path, arguments.rounds, 256
            model = install_embedded_model(models)
        results = asyncio.run(measure(models, model, rounds, max_tokens))
    result = report(results, model, arguments.out)
    print(f"wrote {result.write(arguments.out, NAME)}")


if __name__ == "__main__":
    main()
