"""API gateway overhead: SDK straight to a loopback upstream, through warpcore, and through LiteLLM, same run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import anthropic
import grpc
import httpx2
import openai

from bench.api_upstream import (
    ANTHROPIC_PREFIX,
    FAST_MODEL,
    OPENAI_PREFIX,
    SLOW_MODEL,
    SLOW_TOKENS_PER_SECOND,
    expected_text,
    raise_open_file_limit,
)
from warpcore.client import ApiConfig, AsyncClient, GenerateResult
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("openai", "anthropic")
DIRECT, WARPCORE, LITELLM = "SDK direct", "warpcore", "LiteLLM"
FLOOR = "bare grpc.aio"
CONTENDERS = (DIRECT, WARPCORE, LITELLM)
PROMPT = "Tell me a long story."
API_KEY = "sk-bench-upstream"
LITELLM_KEY = "sk-bench-litellm"
START_TIMEOUT = 180.0  # seconds for a contender's process to become ready on a loaded 2-core machine
_POOL = httpx2.Limits(max_connections=4096, max_keepalive_connections=4096)  # above the largest workload


@dataclass(frozen=True)
class Workload:
    label: str
    streams: int
    tokens: int
    model: str
    rounds: int
    """Rounds of every contender, interleaved so that drift on a shared machine hits each alike."""
    floor: bool = False
    """Whether the bare grpc.aio server runs it too, as the floor of a gRPC gateway's time to first token."""
    own_core: bool = False
    """Whether the clients get a core of their own, the servers (upstream, gateways) sharing the other."""


FULL = (
    Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 60, floor=True),
    Workload(
        "1 stream x 2,000 tokens, client on a core of its own", 1, 2000, FAST_MODEL, 10, floor=True, own_core=True
    ),
    Workload("1 stream x 2,000 tokens", 1, 2000, FAST_MODEL, 10, floor=True),
    Workload("64 streams x 200 tokens", 64, 200, FAST_MODEL, 3),
    Workload("1,000 slow streams x 40 tokens", 1000, 40, SLOW_MODEL, 1),
)
SMOKE = (
    Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 2, floor=True),
    Workload("1 stream x 100 tokens, client on a core of its own", 1, 100, FAST_MODEL, 1, floor=True, own_core=True),
    Workload("1 stream x 100 tokens", 1, 100, FAST_MODEL, 1, floor=True),
    Workload("4 streams x 20 tokens", 4, 20, FAST_MODEL, 1),
    Workload("16 slow streams x 4 tokens", 16, 4, SLOW_MODEL, 1),
)
WARMUP = Workload("warm-up", 4, 50, FAST_MODEL, 2)
SMOKE_WARMUP = Workload("warm-up", 2, 10, FAST_MODEL, 1)


# Processes


class ProcessTree:
    """A started process and its children: CPU seconds and resident memory, read from /proc."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def pids(self) -> list[int]:
        """The process and its descendants now (a scan of /proc: done once per run, not per sample)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        pids, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            pids.append(pid)
            pending += children.get(pid, [])
        return pids

    @staticmethod
    def cpu_seconds(pids: Sequence[int]) -> float:
        ticks = 0
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def rss_bytes(pids: Sequence[int]) -> int:
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError, StopIteration, IndexError):
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
                total += int(next(line for line in lines if line.startswith("VmRSS:")).split()[1]) * 1024
        return total

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_process(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> ProcessTree:
    """Run `command` in the log's folder, with this repository importable and `env` added to the environment."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, **(env or {})}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log.parent, env=environment
        )
    return ProcessTree(process, log)


@contextlib.contextmanager
def client_on_own_core(servers: Sequence[ProcessTree]) -> Iterator[None]:
    """Every thread of the servers on the first core, every thread of this process (the clients) on the second;
    all cores again afterwards. With one core there is nothing to separate and nothing moves."""
    everywhere = os.sched_getaffinity(0)
    first, *others = sorted(everywhere)

    def place(pids: Sequence[int], cores: set[int]) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):
                for thread in Path(f"/proc/{pid}/task").iterdir():  # affinity belongs to each thread
                    with contextlib.suppress(OSError, ValueError):
                        os.sched_setaffinity(int(thread.name), cores)

    server_pids = [pid for tree in servers for pid in tree.pids()]
    if others:
        place(server_pids, {first})
        place([os.getpid()], set(others))
    try:
        yield
    finally:
        place(server_pids, everywhere)
        place([os.getpid()], everywhere)


async def wait_for_log(tree: ProcessTree, marker: str) -> str:
    """The first line of the process's log that holds `marker`."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in tree.log.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        if tree.process.poll() is not None:
            raise RuntimeError(f"{tree.process.args!r} exited with {tree.process.returncode}:\n{tree.log_tail()}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{tree.process.args!r} did not say {marker!r} within {START_TIMEOUT:.0f} s")


def free_port() -> int:
    """A port free right now, for a server that cannot bind port 0 and report it (LiteLLM)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_http(tree: ProcessTree, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if tree.process.poll() is not None:
            raise RuntimeError(f"{tree.process.args!r} exited with {tree.process.returncode}:\n{tree.log_tail()}")
        with contextlib.suppress(OSError), await asyncio.to_thread(urllib.request.urlopen, url, timeout=1) as answer:
            if answer.status == 200:
                return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f} s:\n{tree.log_tail()}")


def litellm_config(upstream: str) -> str:
    """One LiteLLM model per protocol and upstream model; the Anthropic ones on its native Anthropic route."""
    lines = ["model_list:"]
    for protocol, provider_base in (
        ("openai", f"{upstream}{OPENAI_PREFIX}/v1"),
        ("anthropic", upstream + ANTHROPIC_PREFIX),
    ):
        for model in (FAST_MODEL, SLOW_MODEL):
            lines += [
                f"  - model_name: {protocol}-{model}",
                "    litellm_params:",
                f"      model: {protocol}/{model}",
                f'      api_base: "{provider_base}"',
                f"      api_key: {API_KEY}",
            ]
    return "\n".join(lines) + "\n"


# Contenders


@dataclass
class StreamRecord:
    started: float
    arrivals: list[float] = field(default_factory=list)
    """When each piece of text arrived (a gateway that coalesces sends fewer, larger pieces)."""
    error: str | None = None
    server_ttft: float | None = None
    """warpcore's own time from taking the request to handing out its first text, from the result's timings."""


async def _read_texts(
    record: StreamRecord, texts: AsyncIterator[str], expected: str, closing: Callable[[], Awaitable[None]]
) -> StreamRecord:
    parts: list[str] = []
    try:
        async for text in texts:
            if text:
                record.arrivals.append(time.perf_counter())
                parts.append(text)
    finally:
        await closing()
    if "".join(parts) != expected:
        record.error = f"text differs: {len(''.join(parts))} characters instead of {len(expected)}"
    return record


class Contender:
    name: str
    gateway: ProcessTree | None = None

    async def stream(self, protocol: str, model: str, tokens: int) -> StreamRecord:
        record = StreamRecord(time.perf_counter())
        try:
            return await self._stream(record, protocol, model, tokens)
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported, none stops the run
            record.error = f"{type(error).__name__}: {error}"[:300]
            return record

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class VendorSdk(Contender):
    """The vendors' own SDKs, against the upstream itself or against a gateway that speaks its protocols."""

    def __init__(self, name: str, openai_base: str, anthropic_base: str, api_key: str, *, prefixed: bool) -> None:
        self.name = name
        self._openai = openai.AsyncOpenAI(
            base_url=openai_base,
            api_key=api_key,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=_POOL),
        )
        self._anthropic = anthropic.AsyncAnthropic(
            base_url=anthropic_base,
            api_key=api_key,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(limits=_POOL),
        )
        self._prefixed = prefixed
        """Whether model names carry the protocol, as in the gateway's configuration."""

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        name = f"{protocol}-{model}" if self._prefixed else model
        messages: Any = [{"role": "user", "content": PROMPT}]
        if protocol == "openai":
            chunks = await self._openai.chat.completions.create(
                model=name, messages=messages, max_tokens=tokens, stream=True
            )

            async def openai_texts() -> AsyncIterator[str]:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        yield choice.delta.content or ""

            return await _read_texts(record, openai_texts(), expected_text(tokens), chunks.close)
        events = await self._anthropic.messages.create(model=name, messages=messages, max_tokens=tokens, stream=True)

        async def anthropic_texts() -> AsyncIterator[str]:
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text

        return await _read_texts(record, anthropic_texts(), expected_text(tokens), events.close)

    async def close(self) -> None:
        await self._openai.close()
        await self._anthropic.close()


class Warpcore(Contender):
    """warpcore's Python SDK against a warpcore-server process with the upstream's models loaded."""

    name = WARPCORE

    def __init__(self, gateway: ProcessTree, target: str) -> None:
        self.gateway = gateway
        self._client = AsyncClient(target, timeout=600)

    async def load(self, upstream: str) -> None:
        for protocol, base_url in (
            ("openai", f"{upstream}{OPENAI_PREFIX}/v1"),
            ("anthropic", upstream + ANTHROPIC_PREFIX),
        ):
            for model in (FAST_MODEL, SLOW_MODEL):
                config = ApiConfig(api_key=API_KEY, base_url=base_url)
                await self._client.load_model(model, backend=protocol, model_id=f"{protocol}-{model}", config=config)

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        stream = await self._client.generate(f"{protocol}-{model}", prompt=PROMPT, max_tokens=tokens, stream=True)

        async def texts() -> AsyncIterator[str]:
            async for event in stream:
                if isinstance(event, GenerateResult):
                    record.server_ttft = event.timings.time_to_first_token
                else:
                    yield event.text

        async def closing() -> None:
            stream.close()

        return await _read_texts(record, texts(), expected_text(tokens), closing)

    async def close(self) -> None:
        await self._client.close()


class BareGrpc(Contender):
    """The generated stub against `bench.grpc_floor`, which answers without an upstream: gRPC's own cost."""

    name = FLOOR

    def __init__(self, server: ProcessTree, target: str) -> None:
        self.gateway = server
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        options = pb.GenerationOptions(max_tokens=tokens)
        call = self._stub.Generate(pb.GenerateRequest(model_id=model, prompt=PROMPT, options=options))

        async def texts() -> AsyncIterator[str]:
            async for response in call:
                yield response.delta.text

        async def closing() -> None:
            call.cancel()

        return await _read_texts(record, texts(), expected_text(tokens), closing)

    async def close(self) -> None:
        await self._channel.close()


# Measuring


@dataclass
class Run:
    """One workload run by one contender over one protocol."""

    records: list[StreamRecord]
    wall: float
    tokens: int
    gateway_cpu: float | None
    client_cpu: float
    peak_rss: int | None


async def _sample_peak_rss(pids: Sequence[int], peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], ProcessTree.rss_bytes(pids))
        await asyncio.sleep(0.1)


async def run_workload(contender: Contender, protocol: str, workload: Workload) -> Run:
    pids = contender.gateway.pids() if contender.gateway else []
    peak = [ProcessTree.rss_bytes(pids)]
    sampler = asyncio.ensure_future(_sample_peak_rss(pids, peak))
    cpu_before = ProcessTree.cpu_seconds(pids)
    client_before = time.process_time()
    started = time.perf_counter()
    records = await asyncio.gather(
        *(contender.stream(protocol, workload.model, workload.tokens) for _ in range(workload.streams))
    )
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    gateway_cpu = ProcessTree.cpu_seconds(pids) - cpu_before if pids else None
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    tokens = sum(workload.tokens for record in records if record.error is None)
    return Run(list(records), wall, tokens, gateway_cpu, client_cpu, peak[0] if pids else None)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


@dataclass
class Summary:
    """A contender's figures over every run of one workload; None where no stream succeeded."""

    ttft_median_ms: float | None
    ttft_p99_ms: float | None
    server_ttft_median_ms: float | None
    """warpcore's own request-to-first-text, as its result frame reports it."""
    transport_median_ms: float | None
    """Client time to first token minus the server's own, stream by stream: gRPC both ways and the client SDK."""
    stream_tokens_per_second: float | None
    aggregate_tokens_per_second: float
    itl_p99_ms: float | None
    gateway_cpu_per_1k: float | None
    client_cpu_per_1k: float | None
    peak_rss_mib: float | None
    errors: int
    first_error: str | None


def summarize(runs: Sequence[Run], tokens_per_stream: int) -> Summary:
    records = [record for run in runs for record in run.records]
    good = [record for record in records if record.error is None and record.arrivals]
    ttfts = [(record.arrivals[0] - record.started) * 1000 for record in good]
    gaps = [
        (later - earlier) * 1000
        for record in good
        for earlier, later in zip(record.arrivals, record.arrivals[1:], strict=False)
    ]
    rates = [tokens_per_stream / (record.arrivals[-1] - record.started) for record in good]
    timed = [(record, record.server_ttft * 1000) for record in good if record.server_ttft is not None]
    server_ttfts = [server_ttft for _, server_ttft in timed]
    transport = [(record.arrivals[0] - record.started) * 1000 - server_ttft for record, server_ttft in timed]
    thousands = sum(run.tokens for run in runs) / 1000
    gateway_cpu = [run.gateway_cpu for run in runs if run.gateway_cpu is not None]
    errors = [record.error for record in records if record.error is not None]
    rss = [run.peak_rss for run in runs if run.peak_rss is not None]
    return Summary(
        ttft_median_ms=statistics.median(ttfts) if ttfts else None,
        ttft_p99_ms=percentile(ttfts, 0.99) if ttfts else None,
        server_ttft_median_ms=statistics.median(server_ttfts) if server_ttfts else None,
        transport_median_ms=statistics.median(transport) if transport else None,
        stream_tokens_per_second=statistics.median(rates) if rates else None,
        aggregate_tokens_per_second=statistics.median(run.tokens / run.wall for run in runs),
        itl_p99_ms=percentile(gaps, 0.99) if gaps else None,
        gateway_cpu_per_1k=sum(gateway_cpu) / thousands if gateway_cpu and thousands else None,
        client_cpu_per_1k=sum(run.client_cpu for run in runs) / thousands if thousands else None,
        peak_rss_mib=max(rss) / 2**20 if rss else None,
        errors=len(errors),
        first_error=errors[0] if errors else None,
    )


async def measure(
    contenders: Sequence[Contender],
    floor: Contender,
    servers: Sequence[ProcessTree],
    workloads: Sequence[Workload],
    warmup: Workload,
) -> dict[tuple[str, str, str], Summary]:
    for contender in [*contenders, floor]:  # first requests pay for imports and connection set-up: not measured
        for protocol in PROTOCOLS:
            for _ in range(warmup.rounds):
                await run_workload(contender, protocol, warmup)
    results: dict[tuple[str, str, str], Summary] = {}
    for workload in workloads:
        runs: dict[tuple[str, str], list[Run]] = {}
        running = [*contenders, floor] if workload.floor else contenders
        with client_on_own_core(servers) if workload.own_core else contextlib.nullcontext():
            for round_index in range(workload.rounds):
                order = [*running[round_index % len(running) :], *running[: round_index % len(running)]]
                for protocol in PROTOCOLS:
                    for contender in order:
                        run = await run_workload(contender, protocol, workload)
                        runs.setdefault((contender.name, protocol), []).append(run)
                        print(
                            f"{workload.label:32} {protocol:9} {contender.name:10}"
                            f" {run.tokens / run.wall:9.0f} tokens/s"
                            f" {sum(record.error is not None for record in run.records)} errors",
                            file=sys.stderr,
                            flush=True,
                        )
        for (name, protocol), measured in runs.items():
            results[(workload.label, protocol, name)] = summarize(measured, workload.tokens)
    return results


# Reporting


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _difference(minuend: float | None, subtrahend: float | None) -> float | None:
    return None if minuend is None or subtrahend is None else minuend - subtrahend


def _cell(value: float | None, digits: int = 2) -> float | str:
    return "n/a" if value is None else round(value, digits)


def tables(results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload]) -> list[dict[str, Any]]:
    columns = [
        "protocol",
        "contender",
        "TTFT median (ms)",
        "TTFT p99 (ms)",
        "tokens/s per stream",
        "aggregate tokens/s",
        "inter-token p99 (ms)",
        "gateway CPU s / 1k tokens",
        "client CPU s / 1k tokens",
        "gateway peak RSS (MiB)",
        "errors",
    ]
    made = []
    for workload in workloads:
        rows: list[list[str | int | float]] = [
            [
                protocol,
                name,
                _cell(summary.ttft_median_ms),
                _cell(summary.ttft_p99_ms),
                _cell(summary.stream_tokens_per_second, 0),
                _cell(summary.aggregate_tokens_per_second, 0),
                _cell(summary.itl_p99_ms),
                _cell(summary.gateway_cpu_per_1k, 3),
                _cell(summary.client_cpu_per_1k, 3),
                _cell(summary.peak_rss_mib, 0),
                summary.errors,
            ]
            for protocol in PROTOCOLS
            for name in ([*CONTENDERS, FLOOR] if workload.floor else CONTENDERS)
            for summary in [results[(workload.label, protocol, name)]]
        ]
        made.append({"caption": f"{workload.label}, {workload.rounds} round(s)", "columns": columns, "rows": rows})
    ratio_rows: list[list[str | int | float]] = []
    for workload in workloads:
        for protocol in PROTOCOLS:
            direct, ours, litellm = (results[(workload.label, protocol, name)] for name in CONTENDERS)
            ratio_rows.append(
                [
                    workload.label,
                    protocol,
                    _cell(_difference(ours.ttft_median_ms, direct.ttft_median_ms)),
                    _cell(_difference(litellm.ttft_median_ms, direct.ttft_median_ms)),
                    _cell(_ratio(ours.stream_tokens_per_second, direct.stream_tokens_per_second)),
                    _cell(_ratio(ours.aggregate_tokens_per_second, direct.aggregate_tokens_per_second)),
                    _cell(_ratio(litellm.aggregate_tokens_per_second, direct.aggregate_tokens_per_second)),
                    _cell(_ratio(ours.aggregate_tokens_per_second, litellm.aggregate_tokens_per_second)),
                    _cell(_ratio(litellm.gateway_cpu_per_1k, ours.gateway_cpu_per_1k)),
                    _cell(_ratio(litellm.peak_rss_mib, ours.peak_rss_mib)),
                ]
            )
    made.append(
        {
            "caption": "Ratios, same run",
            "columns": [
                "workload",
                "protocol",
                "warpcore added TTFT median (ms)",
                "LiteLLM added TTFT median (ms)",
                "warpcore / direct tokens/s per stream",
                "warpcore / direct aggregate tokens/s",
                "LiteLLM / direct aggregate tokens/s",
                "warpcore / LiteLLM aggregate tokens/s",
                "LiteLLM / warpcore gateway CPU per token",
                "LiteLLM / warpcore gateway peak RSS",
            ],
            "rows": ratio_rows,
        }
    )
    made.append(ttft_breakdown(results, [workload for workload in workloads if workload.floor]))
    return made


def ttft_breakdown(results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload]) -> dict[str, Any]:
    """warpcore's added time to first token, split at the server's own clock: the upstream leg against the SDK
    straight to the upstream, and the gRPC leg (both ways, with the client SDK) against a bare grpc.aio server."""
    rows: list[list[str | int | float]] = []
    for workload in workloads:
        for protocol in PROTOCOLS:
            direct, ours, floor = (results[(workload.label, protocol, name)] for name in (DIRECT, WARPCORE, FLOOR))
            rows.append(
                [
                    workload.label,
                    protocol,
                    _cell(direct.ttft_median_ms),
                    _cell(ours.ttft_median_ms),
                    _cell(_difference(ours.ttft_median_ms, direct.ttft_median_ms)),
                    _cell(ours.server_ttft_median_ms),
                    _cell(_difference(ours.server_ttft_median_ms, direct.ttft_median_ms)),
                    _cell(ours.transport_median_ms),
                    _cell(floor.ttft_median_ms),
                    _cell(_difference(ours.transport_median_ms, floor.ttft_median_ms)),
                ]
            )
    return {
        "caption": "Where warpcore's time to first token goes, medians in ms, same run",
        "columns": [
            "workload",
            "protocol",
            "SDK direct TTFT",
            "warpcore TTFT",
            "added",
            "server: request in to first text out",
            "upstream leg: server - SDK direct",
            "gRPC leg: client TTFT - server's",
            "bare grpc.aio TTFT",
            "gRPC leg beyond bare grpc.aio",
        ],
        "rows": rows,
    }


def targets(results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload]) -> list[dict[str, Any]]:
    """The issue's targets, per protocol. A figure that could not be measured (no stream succeeded) is not met."""
    single, concurrent, slow = workloads[-3:]  # after the latency probe, the three workloads
    made = []
    for protocol in PROTOCOLS:
        direct, ours = (results[(single.label, protocol, name)] for name in (DIRECT, WARPCORE))
        wide_ours, wide_litellm = (results[(concurrent.label, protocol, name)] for name in (WARPCORE, LITELLM))
        held = results[(slow.label, protocol, WARPCORE)]
        measured: list[tuple[str, float | None, str, float, str]] = [
            (
                f"{protocol}: added median TTFT over SDK direct ({single.label})",
                _difference(ours.ttft_median_ms, direct.ttft_median_ms),
                "<",
                1.0,
                "ms",
            ),
            (
                f"{protocol}: single-stream tokens/s, warpcore / SDK direct ({single.label})",
                _ratio(ours.stream_tokens_per_second, direct.stream_tokens_per_second),
                ">=",
                0.9,
                "x",
            ),
            (
                f"{protocol}: aggregate tokens/s, warpcore / LiteLLM ({concurrent.label})",
                _ratio(wide_ours.aggregate_tokens_per_second, wide_litellm.aggregate_tokens_per_second),
                ">=",
                3.0,
                "x",
            ),
            (f"{protocol}: warpcore peak RSS ({slow.label})", held.peak_rss_mib, "<", 1024.0, "MiB"),
            (f"{protocol}: warpcore errors ({slow.label})", float(held.errors), "<", 1.0, "errors"),
        ]
        for name, value, op, threshold, unit in measured:
            met = value is not None and (value < threshold if op == "<" else value >= threshold)
            shown = value if value is not None else (threshold if op == "<" else 0.0)
            made.append(
                {"name": name, "value": round(shown, 3), "op": op, "threshold": threshold, "unit": unit, "met": met}
            )
    return made


def charts(results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def grouped(
        filename: str, title: str, ylabel: str, value: Callable[[Summary], float | None], log: bool = False
    ) -> str:
        figure, axes = plt.subplots(1, len(PROTOCOLS), figsize=(12, 4.5), sharey=True)
        width = 0.8 / len(CONTENDERS)
        for axis, protocol in zip(axes, PROTOCOLS, strict=True):
            for index, name in enumerate(CONTENDERS):
                values = [value(results[(w.label, protocol, name)]) for w in workloads]
                positions = [slot + (index - 1) * width for slot in range(len(workloads))]
                axis.bar(positions, [v or 0.0 for v in values], width, label=name)
            axis.set_xticks(range(len(workloads)), [w.label.replace(" x ", "\nx ") for w in workloads], fontsize=8)
            axis.set_title(protocol)
            if log:
                axis.set_yscale("log")
            axis.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel(ylabel)
        axes[0].legend()
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(out / filename, dpi=100)
        plt.close(figure)
        return filename

    return [
        grouped(
            "api_gateway_throughput.png",
            "Aggregate tokens/s (higher is better)",
            "tokens/s",
            lambda s: s.aggregate_tokens_per_second,
            log=True,
        ),
        grouped(
            "api_gateway_ttft.png",
            "Median time to first token (lower is better)",
            "ms",
            lambda s: s.ttft_median_ms,
            log=True,
        ),
        grouped(
            "api_gateway_cpu.png",
            "Gateway CPU seconds per 1,000 tokens (lower is better; SDK direct has no gateway)",
            "CPU s / 1k tokens",
            lambda s: s.gateway_cpu_per_1k,
        ),
    ]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def description(workloads: Sequence[Workload], litellm_version: str) -> str:
    listed = "; ".join(f"{w.label} ({w.streams} x {w.tokens}, {w.rounds} round(s))" for w in workloads)
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("openai", "anthropic", "grpcio"))
    return (
        "Three ways to stream from the same loopback upstream, measured in one run on one machine. The upstream "
        "(`bench/api_upstream.py`, its own process) speaks OpenAI chat-completions SSE and Anthropic messages SSE; "
        f"model `{FAST_MODEL}` sends every token at once (the best case for exposing a gateway's own cost) and "
        f"`{SLOW_MODEL}` {SLOW_TOKENS_PER_SECOND:g} tokens/s. Contenders: **SDK direct**, the `openai` / "
        "`anthropic` SDK against the upstream (the limit); **warpcore**, the Python SDK (`AsyncClient`) against a "
        "`warpcore-server` process with the upstream's models loaded (per-model stream limit raised to 2,000 for the "
        "largest workload; warpcore joins deltas that pile up while a frame is being written); **LiteLLM** proxy "
        f"{litellm_version} (one process, default settings, offline), the `openai` SDK on its `/v1/chat/completions` "
        "and the `anthropic` SDK on its `/v1/messages` (native Anthropic route to the upstream). Every stream's text "
        "is checked against what the upstream sent; a difference counts as an error. The SDKs run with their default "
        "HTTP client (httpx2), as a program using them would; warpcore's adapters use the same SDKs with their aiohttp "
        f"client. **{FLOOR}** (`bench/grpc_floor.py`, single-stream workloads only) is a bare grpc.aio server that "
        "answers from memory, called through the generated stub: the time to first token no Python gRPC gateway "
        "can beat on this machine. warpcore's result frame reports its own time from request to first text, which "
        "splits its time to first token into an upstream leg and a gRPC leg (both ways, with the client SDK). In the "
        "workload whose clients get a core of their own, every thread of the benchmark process runs on one core and "
        "every thread of the upstream and the gateways on the other: the same work, placed so that the clients never "
        "wait behind the servers for a core.\n\n"
        f"Workloads: {listed}; contenders interleaved within each round, after an unmeasured warm-up. Time to "
        "first token runs from the call to the first text; tokens/s per stream is tokens over that stream's time "
        "to its last text (median over streams); aggregate is all tokens over the workload's wall time (median over "
        "rounds); inter-token latency is the gap between successive pieces of text as the client receives them. "
        "Gateway CPU and peak RSS are read from /proc for the gateway process (and its children); client CPU is the "
        "benchmark process's own, which holds every client.\n\n"
        f"Machine: {os.cpu_count()} cores ({_cpu_model()}), Python {platform.python_version()}, {versions}. The "
        "upstream, the gateway and the clients share these cores, so absolute figures move from run to run and "
        "machine to machine: compare the ratios, which come from the same run."
    )


# Main


async def start_contenders(
    work: Path, litellm_venv: Path, trees: list[ProcessTree]
) -> tuple[list[Contender], Contender]:
    """Start the upstream, warpcore, LiteLLM and the bare gRPC floor, each in its own process (appended to `trees`
    as they start): the contenders, and the floor."""
    trees.append(start_process([sys.executable, "-m", "bench.api_upstream"], work / "upstream.log"))
    upstream = "http://" + (await wait_for_log(trees[-1], "listening on ")).rsplit(" ", 1)[1]
    # LiteLLM takes longest to start: it gets going first, and warpcore starts meanwhile.
    litellm_origin = f"http://127.0.0.1:{free_port()}"
    (work / "litellm.yaml").write_text(litellm_config(upstream))
    litellm_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY}
    litellm_command = [str(litellm_venv / "bin" / "litellm"), "--config", str(work / "litellm.yaml")]
    litellm_command += ["--host", "127.0.0.1", "--port", litellm_origin.rsplit(":", 1)[1], "--telemetry", "False"]
    trees.append(start_process(litellm_command, work / "litellm.log", litellm_env))
    litellm_tree = trees[-1]
    server = [sys.executable, "-m", "warpcore.server", "--port=0", "--no-default-model", "--grace=1"]
    server += ["--max-streams-per-model=2000", "--max-queue-per-model=2000"]  # the default 4 suits local models
    trees.append(start_process(server, work / "warpcore.log"))
    warpcore_tree = trees[-1]
    warpcore_target = (await wait_for_log(warpcore_tree, "serving on ")).split("serving on ", 1)[1].split(",")[0]
    trees.append(start_process([sys.executable, "-m", "bench.grpc_floor"], work / "grpc_floor.log"))
    floor = BareGrpc(trees[-1], (await wait_for_log(trees[-1], "serving on ")).rsplit(" ", 1)[1])
    direct = VendorSdk(DIRECT, f"{upstream}{OPENAI_PREFIX}/v1", upstream + ANTHROPIC_PREFIX, API_KEY, prefixed=False)
    warpcore = Warpcore(warpcore_tree, warpcore_target)
    litellm = VendorSdk(LITELLM, f"{litellm_origin}/v1", litellm_origin, LITELLM_KEY, prefixed=True)
    litellm.gateway = litellm_tree
    contenders: list[Contender] = [direct, warpcore, litellm]
    try:
        await warpcore.load(upstream)
        await wait_for_http(litellm_tree, f"{litellm_origin}/health/liveliness")
    except BaseException:
        for contender in [*contenders, floor]:
            await contender.close()
        raise
    return contenders, floor


def litellm_version(litellm_venv: Path) -> str:
    """The LiteLLM installed in its venv; exits with how to make the venv when there is none."""
    python = litellm_venv / "bin" / "python"
    if not (litellm_venv / "bin" / "litellm").exists():
        sys.exit(
            f"{litellm_venv}/bin/litellm is missing: LiteLLM runs from its own venv. Make it with `make .venv-litellm`"
            f" or `python3 -m venv {litellm_venv} && {litellm_venv}/bin/pip install -r bench/litellm-requirements.txt`"
        )
    query = "from importlib.metadata import version; print(version('litellm'))"
    return subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True).stdout.strip()


async def main(out: Path, smoke: bool, litellm_venv: Path) -> None:
    version = litellm_version(litellm_venv)
    workloads = SMOKE if smoke else FULL
    trees: list[ProcessTree] = []
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-api-") as work:
        try:
            contenders, floor = await start_contenders(Path(work), litellm_venv, trees)
            try:
                results = await measure(contenders, floor, trees, workloads, SMOKE_WARMUP if smoke else WARMUP)
            finally:
                for contender in [*contenders, floor]:
                    await contender.close()
        finally:
            for tree in reversed(trees):
                tree.stop()
    report = {
        "title": "API gateway overhead: warpcore against SDK direct and LiteLLM",
        "description": description(workloads, version) + error_note(results),
        "tables": tables(results, workloads),
        "targets": targets(results, workloads),
        "charts": charts(results, workloads, out),
    }
    (out / "api_gateway.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"wrote {out / 'api_gateway.json'}", file=sys.stderr)


def error_note(results: dict[tuple[str, str, str], Summary]) -> str:
    errors = [f"{' / '.join(key)}: `{summary.first_error}`" for key, summary in results.items() if summary.first_error]
    return "\n\nFirst error of each contender that had any: " + "; ".join(errors) if errors else ""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for api_gateway.json and the charts")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, seconds: checks that every part runs")
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / ".venv-litellm", help="the venv holding LiteLLM")
    arguments = parser.parse_args()
    raise_open_file_limit()
    arguments.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(arguments.out, arguments.smoke, arguments.litellm_venv))
