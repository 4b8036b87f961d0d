"""Local model, greedy, same prompts: warpcore against llama-cpp-python, llama_cpp.server and xllamacpp, 1-8 streams."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from bench.charts import line_chart
from bench.harness import (
    BenchResult,
    Cell,
    ContenderProcess,
    Table,
    Target,
    free_port,
    median,
    python_module,
    wait_grpc_serving,
    wait_http_ready,
)
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

NAME = "local_model"
THREADS = 2
WARPCORE_MODEL_ID = "bench"
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


@dataclass(frozen=True)
class Workload:
    model_path: Path
    """The GGUF file, for the contenders that take a path."""
    models_path: Path
    warpcore_model: str
    """The same file as warpcore names it: relative to models_path."""
    context: int
    """Tokens of context per sequence, for every contender."""
    max_tokens: int
    levels: tuple[int, ...]
    rounds: int
    single_stream_rounds: int
    slots: int
    """Sequences decoded together by the batching contenders (warpcore parallel=N, xllamacpp n_parallel)."""


@dataclass(frozen=True)
class StreamTiming:
    tokens: int
    first_token: float
    """Seconds from sending the request to its first text."""
    seconds: float
    """Seconds from sending the request to its end, waiting for a turn included."""

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class Trial:
    streams: list[StreamTiming]
    wall: float

    @property
    def aggregate(self) -> float:
        return sum(stream.tokens for stream in self.streams) / self.wall


def prompt(round_index: int, stream: int) -> str:
    # A distinct opening line per request, so no contender serves a prompt from its prefix cache.
    number = round_index * 16 + stream + 1
    return f"Chapter {number}\n\n{OPENINGS[(round_index + stream) % len(OPENINGS)]}"


class Contender(ABC):
    name: str

    @abstractmethod
    async def start(self, logs: Path) -> None: ...

    @abstractmethod
    async def generate(self, text: str, max_tokens: int) -> StreamTiming: ...

    @abstractmethod
    async def stop(self) -> None: ...


class DirectLlama(Contender):
    """llama-cpp-python in the benchmark's own process: one model, one generation at a time (it is not thread-safe,
    so concurrent callers take turns), the limit for one stream."""

    name = "llama-cpp-python direct"

    def __init__(self, workload: Workload) -> None:
        self._workload = workload
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max(workload.levels), thread_name_prefix="direct")
        self._llama: Any = None

    async def start(self, logs: Path) -> None:
        from llama_cpp import Llama  # the other contenders never load llama.cpp into this process

        self._llama = await asyncio.to_thread(
            Llama,
            model_path=str(self._workload.model_path),
            n_ctx=self._workload.context,
            n_threads=THREADS,
            n_threads_batch=THREADS,
            verbose=False,
        )

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._generate, text, max_tokens, started)

    def _generate(self, text: str, max_tokens: int, started: float) -> StreamTiming:
        tokens, first = 0, 0.0
        with self._lock:
            for chunk in self._llama.create_completion(text, max_tokens=max_tokens, temperature=0.0, stream=True):
                if chunk["choices"][0]["text"]:
                    tokens += 1
                    first = first or time.perf_counter() - started
        return StreamTiming(tokens, first, time.perf_counter() - started)

    async def stop(self) -> None:
        self._threads.shutdown()
        if self._llama is not None:
            self._llama.close()


class WarpcoreServer(Contender):
    """`warpcore-server` in its own process, preloading the model from a config file; streams over gRPC."""

    def __init__(self, workload: Workload, parallel: int) -> None:
        self.name = f"warpcore parallel={parallel}"
        self._workload = workload
        self._parallel = parallel
        self._process: ContenderProcess | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: inference_pb2_grpc.InferenceServiceAsyncStub | None = None

    async def start(self, logs: Path) -> None:
        workload = self._workload
        config = logs / f"warpcore-parallel-{self._parallel}.toml"
        config.write_text(
            "[[models]]\n"
            f'id = "{WARPCORE_MODEL_ID}"\nbackend = "llama_cpp"\nmodel = "{workload.warpcore_model}"\n'
            f"context_size = {workload.context}\n\n"
            f"[models.local]\nthreads = {THREADS}\nparallel = {self._parallel}\n"
        )
        port = free_port()
        arguments = ("--host", "127.0.0.1", "--port", str(port), "--no-default-model", "--config", str(config))
        # Every stream is admitted at once, so that queueing is the model's own (parallel slots), not the limiter's.
        limits = ("--max-streams-per-model", str(max(workload.levels)), "--models-path", str(workload.models_path))
        self._process = await ContenderProcess.start(
            self.name, python_module("warpcore.server", *arguments, *limits), logs
        )
        await wait_grpc_serving(f"127.0.0.1:{port}", self._process)
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        assert self._stub is not None
        request = pb.GenerateRequest(
            model_id=WARPCORE_MODEL_ID,
            prompt=text,
            options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0.0),
        )
        started = time.perf_counter()
        tokens, first = 0, 0.0
        async for frame in self._stub.Generate(request):
            if frame.HasField("delta") and frame.delta.text:
                first = first or time.perf_counter() - started
            elif frame.HasField("result"):
                tokens = frame.result.usage.completion_tokens
        return StreamTiming(tokens, first, time.perf_counter() - started)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._process is not None:
            await self._process.stop()


class OpenAICompletionsServer(Contender):
    """A server with an OpenAI-compatible /v1/completions endpoint, in its own process; streams over SSE."""

    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name = name
        self._argv = argv
        self._base = f"http://127.0.0.1:{port}"
        self._process: ContenderProcess | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, logs: Path) -> None:
        self._process = await ContenderProcess.start(self.name, self._argv, logs)
        await wait_http_ready(f"{self._base}/v1/models", self._process)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        assert self._session is not None
        body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
        started = time.perf_counter()
        tokens, first, reported = 0, 0.0, None
        async with self._session.post(f"{self._base}/v1/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["text"]:
                    tokens += 1
                    first = first or time.perf_counter() - started
                if chunk.get("usage"):
                    reported = chunk["usage"]["completion_tokens"]
        # Each chunk is one token, unless text had to wait for the rest of a UTF-8 character; a usage count wins.
        return StreamTiming(reported or tokens, first, time.perf_counter() - started)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            await self._process.stop()


def llama_cpp_server(workload: Workload) -> OpenAICompletionsServer:
    port = free_port()
    arguments = (
        *("--model", str(workload.model_path), "--host", "127.0.0.1", "--port", str(port)),
        *("--n_threads", str(THREADS), "--n_threads_batch", str(THREADS), "--n_ctx", str(workload.context)),
        # Off, so that a second request waits for the first instead of cutting it short.
        *("--interrupt_requests", "False", "--verbose", "False"),
    )
    return OpenAICompletionsServer("llama_cpp.server", python_module("llama_cpp.server", *arguments), port)


def xllamacpp_server(workload: Workload) -> OpenAICompletionsServer:
    port = free_port()
    arguments = (
        *("--model", str(workload.model_path), "--port", str(port), "--threads", str(THREADS)),
        *("--parallel", str(workload.slots), "--context", str(workload.context)),
    )
    name = f"xllamacpp n_parallel={workload.slots}"
    return OpenAICompletionsServer(name, python_module("bench.xllamacpp_server", *arguments), port)


def contenders(workload: Workload) -> list[Contender]:
    return [
        DirectLlama(workload),
        WarpcoreServer(workload, 1),
        WarpcoreServer(workload, workload.slots),
        llama_cpp_server(workload),
        xllamacpp_server(workload),
    ]


async def bounded(contender: Contender, streams: list[Coroutine[Any, Any, StreamTiming]]) -> list[StreamTiming]:
    """All of a round's streams, or an error naming the contender that hung (rather than a silent test timeout)."""
    seconds = 60 + len(streams) * 30
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


@dataclass(frozen=True)
class Summary:
    tokens_per_stream: float
    aggregate: float
    slowest: float
    fastest: float
    fairness: float
    first_token: float


def summarize(trials: list[Trial]) -> Summary:
    rates = [[stream.rate for stream in trial.streams] for trial in trials]
    return Summary(
        tokens_per_stream=median(stream.tokens for trial in trials for stream in trial.streams),
        aggregate=median(trial.aggregate for trial in trials),
        slowest=median(min(each) for each in rates),
        fastest=median(max(each) for each in rates),
        fairness=median(min(each) / max(each) for each in rates),
        first_token=median(stream.first_token for trial in trials for stream in trial.streams),
    )


def paired_ratio(trials: dict[tuple[str, int], list[Trial]], numerator: str, denominator: str, level: int) -> float:
    """Median over rounds of the ratio of aggregate tokens/s, each pair measured back to back."""
    pairs = zip(trials[numerator, level], trials[denominator, level], strict=True)
    return median(ours.aggregate / theirs.aggregate for ours, theirs in pairs)


def report(workload: Workload, names: list[str], trials: dict[tuple[str, int], list[Trial]], out: Path) -> BenchResult:
    direct, serial, batched, _, xllamacpp = names
    summaries = {key: summarize(value) for key, value in trials.items()}
    rows: list[list[Cell]] = []
    for level in workload.levels:
        for name in names:
            summary = summaries[name, level]
            rows.append(
                [
                    level,
                    name,
                    round(summary.tokens_per_stream),
                    round(summary.aggregate, 1),
                    round(summary.slowest, 1),
                    round(summary.fastest, 1),
                    round(summary.fairness, 2),
                    round(summary.first_token * 1000),
                ]
            )
    measured = Table(
        caption="Tokens/s per stream (slowest and fastest stream of a round) and in aggregate, time to first token;"
        " medians over rounds",
        columns=[
            "streams",
            "contender",
            "tokens/stream",
            "aggregate tok/s",
            "slowest stream tok/s",
            "fastest stream tok/s",
            "slowest/fastest",
            "TTFT median ms",
        ],
        rows=rows,
    )
    single = paired_ratio(trials, serial, direct, 1)
    ratio_rows: list[list[Cell]] = [
        [f"{serial} / {direct}", 1, round(single, 3)],
        [f"{batched} / {direct}", 1, round(paired_ratio(trials, batched, direct, 1), 3)],
    ]
    targets = [Target(f"1 stream: {serial} / {direct} (tokens/s)", round(single, 3), ">=", 0.97, "x")]
    for level in workload.levels[1:]:
        for name in (serial, batched):
            ratio_rows.append(
                [f"{name} / {xllamacpp} (aggregate)", level, round(paired_ratio(trials, name, xllamacpp, level), 3)]
            )
    if 4 in workload.levels:
        versus_batching = paired_ratio(trials, batched, xllamacpp, 4)
        fairness = summaries[batched, 4].fairness
        targets += [
            Target(
                f"4 streams: {batched} / {xllamacpp} aggregate (continuous-batching issue)",
                round(versus_batching, 3),
                ">=",
                1.0,
                "x",
            ),
            Target(
                f"4 streams: {batched} slowest / fastest stream (continuous-batching issue)",
                round(fairness, 3),
                ">=",
                0.8,
                "x",
            ),
        ]
    ratios = Table(
        caption="Ratios, each the median over rounds of a pair measured back to back",
        columns=["ratio", "streams", "value"],
        rows=ratio_rows,
    )
    levels = list(workload.levels)
    charts = [
        line_chart(
            out / f"{NAME}_aggregate.png",
            "Aggregate tokens/s",
            "concurrent streams",
            "tokens/s",
            levels,
            {name: [summaries[name, level].aggregate for level in levels] for name in names},
        ),
        line_chart(
            out / f"{NAME}_slowest_stream.png",
            "Slowest stream's tokens/s",
            "concurrent streams",
            "tokens/s",
            levels,
            {name: [summaries[name, level].slowest for level in levels] for name in names},
        ),
        line_chart(
            out / f"{NAME}_ttft.png",
            "Time to first token (median)",
            "concurrent streams",
            "ms (log scale)",
            levels,
            {name: [summaries[name, level].first_token * 1000 for level in levels] for name in names},
            log_y=True,  # from a tenth of a second to waiting out seven other streams
        ),
    ]
    description = (
        f"`{workload.model_path.name}`, greedy (temperature 0), raw completion of the same prompts (story openings,"
        f" a distinct one per request so that no prefix cache helps), {workload.max_tokens} tokens per stream,"
        f" {THREADS} threads and {workload.context} tokens of context per sequence for everyone."
        f" Rounds per concurrency level: {workload.rounds} ({workload.single_stream_rounds} for one stream); within"
        " a round the contenders run one after another in an order that rotates, so drift on this shared machine"
        " hits all alike, and ratios are taken pair by pair within a round.\n\n"
        f"- **{direct}**: `Llama.create_completion(stream=True)` in the benchmark's process; one model object,"
        " so concurrent streams take turns (it is not thread-safe).\n"
        f"- **{serial}** / **{batched}**: `warpcore-server` in its own process, model preloaded from a config file"
        " with `LocalBackendConfig.parallel` 1 (one generation at a time) or"
        f" {workload.slots} (that many sequences decoded together: continuous batching); gRPC streaming from a"
        " `grpc.aio` client.\n"
        "- **llama_cpp.server**: llama-cpp-python's OpenAI-compatible server, `interrupt_requests` off so that"
        " requests queue; `/v1/completions` over SSE.\n"
        f"- **{xllamacpp}**: llama.cpp's own server with continuous batching as bundled in the `xllamacpp` wheel"
        f" (its own llama.cpp build), {workload.slots} slots, in its own process; `/v1/completions` over SSE.\n\n"
        "A stream's tokens/s counts its wait for a turn; aggregate is all streams' tokens over the round's wall"
        " time; TTFT is from sending the request to its first text. Tokens are the server's usage count where it"
        " sends one (warpcore, xllamacpp), else text chunks."
    )
    return BenchResult(
        title="Local model: warpcore against llama-cpp-python, llama_cpp.server and xllamacpp",
        description=description,
        tables=[measured, ratios],
        targets=targets,
        charts=[chart.name for chart in charts],
    )


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
        default=7,
        help="rounds at 1 stream (cheap, and its ratio has a tight target)",
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
