"""The API bench's workloads and how they run: streams at once per contender and protocol, contenders interleaved
round by round; what each run measured, and its summary over rounds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.api_contenders import Contender, StreamRecord
from bench.api_upstream import FAST_MODEL, SLOW_MODEL
from bench.harness import ContenderProcess, cpu_seconds, median, rss_bytes

UPSTREAM = "upstream"
"""The name of the upstream's process among the servers."""

PROTOCOLS = ("openai", "anthropic")


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
    upstream_apart: bool = False
    """Whether the upstream gets a core of its own, the gateways and the clients sharing the others: a remote API,
    whose work takes none of the gateway's CPU."""


FULL = (
    Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 60, floor=True),
    Workload(
        "1 stream x 2,000 tokens, upstream on a core of its own",
        1,
        2000,
        FAST_MODEL,
        10,
        floor=True,
        upstream_apart=True,
    ),
    Workload("1 stream x 2,000 tokens", 1, 2000, FAST_MODEL, 10, floor=True),
    Workload("64 streams x 200 tokens", 64, 200, FAST_MODEL, 3),
    Workload("1,000 slow streams x 40 tokens", 1000, 40, SLOW_MODEL, 1),
)
SMOKE = (
    Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 2, floor=True),
    Workload(
        "1 stream x 100 tokens, upstream on a core of its own", 1, 100, FAST_MODEL, 1, floor=True, upstream_apart=True
    ),
    Workload("1 stream x 100 tokens", 1, 100, FAST_MODEL, 1, floor=True),
    Workload("4 streams x 20 tokens", 4, 20, FAST_MODEL, 1),
    Workload("16 slow streams x 4 tokens", 16, 4, SLOW_MODEL, 1),
)
WARMUP = Workload("warm-up", 4, 50, FAST_MODEL, 2)
SMOKE_WARMUP = Workload("warm-up", 2, 10, FAST_MODEL, 1)


@contextlib.contextmanager
def upstream_on_own_core(upstream_pids: Sequence[int], other_pids: Sequence[int]) -> Iterator[None]:
    """Every thread of the upstream's processes on the last core, every thread of the other servers' and of this
    process (the clients) on the others; all cores again afterwards. With one core there is nothing to separate and
    nothing moves."""
    everywhere = os.sched_getaffinity(0)
    *others, last = sorted(everywhere)

    def place(pids: Sequence[int], cores: set[int]) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):
                for thread in Path(f"/proc/{pid}/task").iterdir():  # affinity belongs to each thread
                    with contextlib.suppress(OSError, ValueError):
                        os.sched_setaffinity(int(thread.name), cores)

    if others:
        place(upstream_pids, {last})
        place([*other_pids, os.getpid()], set(others))
    try:
        yield
    finally:
        place([*upstream_pids, *other_pids, os.getpid()], everywhere)


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
        peak[0] = max(peak[0], rss_bytes(pids))
        await asyncio.sleep(0.1)


async def run_workload(contender: Contender, protocol: str, workload: Workload) -> Run:
    pids = contender.gateway.pids() if contender.gateway else []
    peak = [rss_bytes(pids)]
    sampler = asyncio.ensure_future(_sample_peak_rss(pids, peak))
    cpu_before = cpu_seconds(pids)
    client_before = time.process_time()
    started = time.perf_counter()
    records = await asyncio.gather(
        *(contender.stream(protocol, workload.model, workload.tokens) for _ in range(workload.streams))
    )
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    gateway_cpu = cpu_seconds(pids) - cpu_before if pids else None
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
        ttft_median_ms=median(ttfts) if ttfts else None,
        ttft_p99_ms=percentile(ttfts, 0.99) if ttfts else None,
        server_ttft_median_ms=median(server_ttfts) if server_ttfts else None,
        transport_median_ms=median(transport) if transport else None,
        stream_tokens_per_second=median(rates) if rates else None,
        aggregate_tokens_per_second=median(run.tokens / run.wall for run in runs),
        itl_p99_ms=percentile(gaps, 0.99) if gaps else None,
        gateway_cpu_per_1k=sum(gateway_cpu) / thousands if gateway_cpu and thousands else None,
        client_cpu_per_1k=sum(run.client_cpu for run in runs) / thousands if thousands else None,
        peak_rss_mib=max(rss) / 2**20 if rss else None,
        errors=len(errors),
        first_error=errors[0] if errors else None,
    )


async def measure(
    contenders: Sequence[Contender],
    floor: Contender | None,
    servers: Sequence[ContenderProcess],
    workloads: Sequence[Workload],
    warmup: Workload,
) -> dict[tuple[str, str, str], Summary]:
    floors = [floor] if floor is not None else []
    for contender in [*contenders, *floors]:  # first requests pay for imports and connection set-up: not measured
        for protocol in PROTOCOLS:
            for _ in range(warmup.rounds):
                await run_workload(contender, protocol, warmup)
    results: dict[tuple[str, str, str], Summary] = {}
    for workload in workloads:
        runs: dict[tuple[str, str], list[Run]] = {}
        running = [*contenders, *floors] if workload.floor else list(contenders)
        placed: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if workload.upstream_apart:
            upstream = [pid for server in servers if server.name == UPSTREAM for pid in server.pids()]
            others = [pid for server in servers if server.name != UPSTREAM for pid in server.pids()]
            placed = upstream_on_own_core(upstream, others)
        with placed:
            for round_index in range(workload.rounds):
                order = [*running[round_index % len(running) :], *running[: round_index % len(running)]]
                for protocol in PROTOCOLS:
                    for contender in order:
                        run = await run_workload(contender, protocol, workload)
                        runs.setdefault((contender.name, protocol), []).append(run)
                        print(
                            f"{workload.label:32} {protocol:9} {contender.name:13}"
                            f" {run.tokens / run.wall:9.0f} tokens/s"
                            f" {sum(record.error is not None for record in run.records)} errors",
                            file=sys.stderr,
                            flush=True,
                        )
        for (name, protocol), measured in runs.items():
            results[(workload.label, protocol, name)] = summarize(measured, workload.tokens)
    return results
