"""Local embeddings: 256 short texts per call through warpcore's Embed against llama-cpp-python's own `Llama.embed`
on the same batch, same model, same settings, rounds interleaved."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.charts import bar_chart
from bench.harness import (
    BenchResult,
    ContenderProcess,
    Table,
    Target,
    free_port,
    median,
    python_module,
    wait_grpc_serving,
)
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2_grpc

NAME = "embeddings"
TARGET_RATIO = 0.9
THREADS = 2
TEXTS = 256
MODEL_ID = "bench-embed"
DIRECT = "llama-cpp-python Llama.embed"
WARPCORE = "warpcore Embed"
SUBJECTS = ("the harbour", "a mountain road", "the old library", "an orchard", "the night train", "a market")
VERBS = ("opens at dawn", "is quiet in winter", "smells of rain", "was rebuilt twice", "draws painters")


def texts() -> list[str]:
    """Short sentences, all different, a dozen tokens or so each."""
    return [f"{SUBJECTS[n % 6]} {VERBS[n % 5]}, note {n}." for n in range(TEXTS)]


@dataclass(frozen=True)
class Workload:
    model_path: Path
    models_path: Path
    warpcore_model: str
    """The same file as warpcore names it: relative to models_path."""
    context: int
    rounds: int


class Direct:
    """llama-cpp-python in this process, loaded for embeddings as warpcore loads its model: mean pooling, every
    text's tokens in batches as large as the context."""

    def __init__(self, workload: Workload) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama  # only this contender loads llama.cpp here

        context = workload.context
        self._llama: Any = Llama(
            model_path=str(workload.model_path),
            embedding=True,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            n_ctx=context,
            n_batch=context,
            n_ubatch=context,
            n_threads=THREADS,
            n_threads_batch=THREADS,
            verbose=False,
        )

    async def embed(self, batch: list[str]) -> int:
        vectors = await asyncio.to_thread(self._llama.embed, batch, normalize=True)
        return len(vectors)

    def close(self) -> None:
        self._llama.close()


class Warpcore:
    """`warpcore-server` in its own process, the model preloaded for embeddings from a config file."""

    def __init__(self) -> None:
        self._process: ContenderProcess | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def start(self, workload: Workload, logs: Path) -> None:
        config = logs / "warpcore-embeddings.toml"
        config.write_text(
            f'[[models]]\nid = "{MODEL_ID}"\nbackend = "llama_cpp"\nmodel = "{workload.warpcore_model}"\n'
            f"context_size = {workload.context}\n\n"
            f'[models.local]\nthreads = {THREADS}\nembedding = true\npooling = "mean"\n'
        )
        port = free_port()
        arguments = ("--host", "127.0.0.1", "--port", str(port), "--no-default-model", "--config", str(config))
        command = python_module("warpcore.server", *arguments, "--models-path", str(workload.models_path))
        self._process = await ContenderProcess.start(WARPCORE, command, logs)
        await wait_grpc_serving(f"127.0.0.1:{port}", self._process)
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    async def embed(self, batch: list[str]) -> int:
        response: epb.EmbedResponse = await self._stub.Embed(epb.EmbedRequest(model_id=MODEL_ID, inputs=batch))
        return len(response.embeddings)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._process is not None:
            await self._process.stop()


async def measure(workload: Workload, logs: Path) -> dict[str, list[float]]:
    """Texts per second of each contender, one call of all texts a round, the order alternating by round."""
    batch = texts()
    direct = await asyncio.to_thread(Direct, workload)
    server = Warpcore()
    rates: dict[str, list[float]] = {DIRECT: [], WARPCORE: []}
    try:
        await server.start(workload, logs)
        calls = {DIRECT: direct.embed, WARPCORE: server.embed}
        for call in calls.values():  # first-call costs (buffers, caches) stay out of the figures
            await call(batch[:4])
        for round_index in range(workload.rounds):
            for name in list(calls)[:: 1 if round_index % 2 == 0 else -1]:
                started = time.perf_counter()
                assert await calls[name](batch) == len(batch)
                rates[name].append(len(batch) / (time.perf_counter() - started))
            print(f"round {round_index + 1}/{workload.rounds} done", flush=True)
    finally:
        await server.stop()
        direct.close()
    return rates


def report(workload: Workload, rates: dict[str, list[float]], out: Path) -> BenchResult:
    medians = {name: median(values) for name, values in rates.items()}
    ratio = medians[WARPCORE] / medians[DIRECT]
    table = Table(
        caption=f"Texts embedded per second, {TEXTS} short texts per call ({workload.rounds} rounds)",
        columns=["contender", "median texts/s", "min texts/s", "max texts/s"],
        rows=[[name, round(medians[name], 1), round(min(v), 1), round(max(v), 1)] for name, v in rates.items()],
    )
    chart = bar_chart(out / f"{NAME}_throughput.png", "Embeddings (median)", "texts/s", medians)
    description = (
        f"The same {TEXTS} short sentences in one call per round: warpcore's `Embed` over gRPC to `warpcore-server`"
        f" (the model preloaded with `embedding = true`, mean pooling, {THREADS} threads) against llama-cpp-python's"
        f" `Llama.embed(normalize=True)` in the bench's own process with the same pooling, threads, context"
        f" ({workload.context} tokens) and batch size. Rounds alternate which contender goes first."
    )
    target = Target("warpcore Embed / Llama.embed, texts/s", round(ratio, 3), ">=", TARGET_RATIO, "x")
    return BenchResult("Local embeddings: warpcore vs llama-cpp-python", description, [table], [target], [chart.name])


def smoke_workload(models: Path) -> Workload:
    from tests.tiny_model import CONTEXT, write_tiny_model

    path = write_tiny_model(models / "tiny.gguf")
    return Workload(path, models, path.name, CONTEXT, rounds=1)


def gemma_workload(models: Path, rounds: int) -> Workload:
    from warpcore.server.embedded import install_embedded_model

    name = install_embedded_model(models)
    return Workload(models / name, models, name, context=4096, rounds=rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for embeddings.json and its chart")
    parser.add_argument("--smoke", action="store_true", help="the tiny test model, one round: seconds")
    default_models = os.environ.get("MODELS_PATH", str(Path.home() / ".cache" / "warpcore" / "models"))
    parser.add_argument("--models-path", type=Path, default=Path(default_models))
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-") as scratch:
        smoke = arguments.smoke
        workload = smoke_workload(Path(scratch)) if smoke else gemma_workload(arguments.models_path, arguments.rounds)
        rates = asyncio.run(measure(workload, Path(scratch)))
    result = report(workload, rates, arguments.out)
    print(f"wrote {result.write(arguments.out, NAME)}")


if __name__ == "__main__":
    main()
