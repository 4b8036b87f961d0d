"""The API bench's report: a table per workload, the ratios of the same run, where warpcore's time to first token
goes, the issue's targets, three charts and a description of what ran."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

from bench.api_contenders import CONTENDERS, DIRECT, FLOOR, LITELLM, WARPCORE
from bench.api_upstream import FAST_MODEL, SLOW_MODEL, SLOW_TOKENS_PER_SECOND
from bench.api_workloads import PROTOCOLS, Summary, Workload
from bench.charts import grouped_bar_chart
from bench.harness import BenchResult, Cell, Table, Target
from bench.report import cpu_model

NAME = "api_gateway"
Results = dict[tuple[str, str, str], Summary]
"""Each summary by workload label, protocol and contender name."""


def report(results: Results, workloads: Sequence[Workload], litellm_version: str, out: Path) -> BenchResult:
    """The result file's contents, the charts written to `out`."""
    return BenchResult(
        title="API gateway overhead: warpcore against SDK direct and LiteLLM",
        description=description(workloads, litellm_version) + error_note(results),
        tables=tables(results, workloads),
        targets=targets(results, workloads),
        charts=charts(results, workloads, out),
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def difference(minuend: float | None, subtrahend: float | None) -> float | None:
    return None if minuend is None or subtrahend is None else minuend - subtrahend


def cell(value: float | None, digits: int = 2) -> float | str:
    return "n/a" if value is None else round(value, digits)


def tables(results: Results, workloads: Sequence[Workload]) -> list[Table]:
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
        rows: list[list[Cell]] = [
            [
                protocol,
                name,
                cell(summary.ttft_median_ms),
                cell(summary.ttft_p99_ms),
                cell(summary.stream_tokens_per_second, 0),
                cell(summary.aggregate_tokens_per_second, 0),
                cell(summary.itl_p99_ms),
                cell(summary.gateway_cpu_per_1k, 3),
                cell(summary.client_cpu_per_1k, 3),
                cell(summary.peak_rss_mib, 0),
                summary.errors,
            ]
            for protocol in PROTOCOLS
            for name in ([*CONTENDERS, FLOOR] if workload.floor else CONTENDERS)
            for summary in [results[(workload.label, protocol, name)]]
        ]
        made.append(Table(f"{workload.label}, {workload.rounds} round(s)", columns, rows))
    ratio_rows: list[list[Cell]] = []
    for workload in workloads:
        for protocol in PROTOCOLS:
            direct, ours, litellm = (results[(workload.label, protocol, name)] for name in CONTENDERS)
            ratio_rows.append(
                [
                    workload.label,
                    protocol,
                    cell(difference(ours.ttft_median_ms, direct.ttft_median_ms)),
                    cell(difference(litellm.ttft_median_ms, direct.ttft_median_ms)),
                    cell(_ratio(ours.stream_tokens_per_second, direct.stream_tokens_per_second)),
                    cell(_ratio(ours.aggregate_tokens_per_second, direct.aggregate_tokens_per_second)),
                    cell(_ratio(litellm.aggregate_tokens_per_second, direct.aggregate_tokens_per_second)),
                    cell(_ratio(ours.aggregate_tokens_per_second, litellm.aggregate_tokens_per_second)),
                    cell(_ratio(litellm.gateway_cpu_per_1k, ours.gateway_cpu_per_1k)),
                    cell(_ratio(litellm.peak_rss_mib, ours.peak_rss_mib)),
                ]
            )
    made.append(
        Table(
            caption="Ratios, same run",
            columns=[
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
            rows=ratio_rows,
        )
    )
    made.append(ttft_breakdown(results, [workload for workload in workloads if workload.floor]))
    return made


def ttft_breakdown(results: Results, workloads: Sequence[Workload]) -> Table:
    """warpcore's added time to first token, split at the server's own clock: the upstream leg against the SDK
    straight to the upstream, and the gRPC leg (both ways, with the client SDK) against a bare grpc.aio server."""
    rows: list[list[Cell]] = []
    for workload in workloads:
        for protocol in PROTOCOLS:
            direct, ours, floor = (results[(workload.label, protocol, name)] for name in (DIRECT, WARPCORE, FLOOR))
            rows.append(
                [
                    workload.label,
                    protocol,
                    cell(direct.ttft_median_ms),
                    cell(ours.ttft_median_ms),
                    cell(difference(ours.ttft_median_ms, direct.ttft_median_ms)),
                    cell(ours.server_ttft_median_ms),
                    cell(difference(ours.server_ttft_median_ms, direct.ttft_median_ms)),
                    cell(ours.transport_median_ms),
                    cell(floor.ttft_median_ms),
                    cell(difference(ours.transport_median_ms, floor.ttft_median_ms)),
                ]
            )
    return Table(
        caption="Where warpcore's time to first token goes, medians in ms, same run",
        columns=[
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
        rows=rows,
    )


def targets(results: Results, workloads: Sequence[Workload]) -> list[Target]:
    """The issue's targets, per protocol. A figure that could not be measured (no stream succeeded) is not met: it
    shows as the threshold of an upper bound, or 0 for a lower one."""
    single, concurrent, slow = workloads[-3:]  # after the latency probes, the three workloads
    # The single stream again, with the upstream on a core of its own: what warpcore adds in front of a
    # remote API, without the kernel's placing of a local upstream's burst.
    apart = [workload for workload in workloads if workload.upstream_apart]
    made = []
    for protocol in PROTOCOLS:
        direct, ours = (results[(single.label, protocol, name)] for name in (DIRECT, WARPCORE))
        added: list[tuple[str, float | None, Literal[">=", "<"], float, str]] = [
            (
                f"{protocol}: added median TTFT over SDK direct ({workload.label})",
                difference(*(results[(workload.label, protocol, name)].ttft_median_ms for name in (WARPCORE, DIRECT))),
                "<",
                1.0,
                "ms",
            )
            for workload in apart
        ]
        wide_ours, wide_litellm = (results[(concurrent.label, protocol, name)] for name in (WARPCORE, LITELLM))
        held = results[(slow.label, protocol, WARPCORE)]
        measured: list[tuple[str, float | None, Literal[">=", "<"], float, str]] = [
            (
                f"{protocol}: added median TTFT over SDK direct ({single.label})",
                difference(ours.ttft_median_ms, direct.ttft_median_ms),
                "<",
                1.0,
                "ms",
            ),
            *added,
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
            shown = value if value is not None else (threshold if op == "<" else 0.0)
            made.append(Target(name, round(shown, 3), op, threshold, unit))
    return made


def charts(results: Results, workloads: Sequence[Workload], out: Path) -> list[str]:
    """Bars per workload, one per contender, a panel per protocol: throughput, time to first token, gateway CPU."""
    labels = [workload.label.replace(" x ", "\nx ") for workload in workloads]

    def grouped(filename: str, title: str, y_label: str, value: Callable[[Summary], float | None], log: bool) -> str:
        panels = {
            protocol: {
                name: [value(results[(workload.label, protocol, name)]) for workload in workloads]
                for name in CONTENDERS
            }
            for protocol in PROTOCOLS
        }
        return grouped_bar_chart(out / filename, title, y_label, labels, panels, log_y=log).name

    return [
        grouped(
            f"{NAME}_throughput.png",
            "Aggregate tokens/s (higher is better)",
            "tokens/s",
            lambda s: s.aggregate_tokens_per_second,
            log=True,
        ),
        grouped(
            f"{NAME}_ttft.png",
            "Median time to first token (lower is better)",
            "ms",
            lambda s: s.ttft_median_ms,
            log=True,
        ),
        grouped(
            f"{NAME}_cpu.png",
            "Gateway CPU seconds per 1,000 tokens (lower is better; SDK direct has no gateway)",
            "CPU s / 1k tokens",
            lambda s: s.gateway_cpu_per_1k,
            log=False,
        ),
    ]


def description(workloads: Sequence[Workload], litellm_version: str) -> str:
    listed = "; ".join(f"{w.label} ({w.streams} x {w.tokens}, {w.rounds} round(s))" for w in workloads)
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("openai", "anthropic", "grpcio"))
    return (
        "Three ways to stream from the same loopback upstream, measured in one run on one machine. The upstream "
        "(`bench/api_upstream.py`, its own process) speaks OpenAI chat-completions SSE and Anthropic messages SSE; "
        f"model `{FAST_MODEL}` sends every token at once (the best case for exposing a gateway's own cost) and "
        f"`{SLOW_MODEL}` {SLOW_TOKENS_PER_SECOND:g} tokens/s. Contenders: **SDK direct**, the `openai` / "
        "`anthropic` SDK against the upstream (the limit); **warpcore**, the Python SDK (`AsyncClient`) against a "
        "`warpcore-server` process (its default uvloop event loop) with the upstream's models loaded (per-model "
        "stream limit raised to 2,000 for the largest workload; warpcore joins deltas that pile up while a frame is "
        "being written); **LiteLLM** proxy "
        f"{litellm_version} (one process, default settings, offline), the `openai` SDK on its `/v1/chat/completions` "
        "and the `anthropic` SDK on its `/v1/messages` (native Anthropic route to the upstream). Every stream's text "
        "is checked against what the upstream sent; a difference counts as an error. The SDKs run with their default "
        "HTTP client (httpx2), as a program using them would; warpcore's adapters use the same SDKs with their aiohttp "
        f"client. **{FLOOR}** (`bench/grpc_floor.py`, single-stream workloads only) is a bare grpc.aio server on "
        "uvloop that answers from memory, called through the generated stub: the time to first token no Python gRPC "
        "gateway can beat on this machine. warpcore's result frame reports its own time from request to first "
        "text, which splits its time to first token into an upstream leg and a gRPC leg (both ways, with the client "
        "SDK). In the workload whose upstream gets a core of its own, every thread of the upstream runs on one core "
        "and every thread of the gateways and of the benchmark process (the clients) on the other: the upstream then "
        "stands for a remote API, whose work takes none of the gateway's CPU. In the others, the kernel places every "
        "process, and while the upstream sends a fast stream, a gateway that lands on its core waits for it.\n\n"
        f"Workloads: {listed}; contenders interleaved within each round, after an unmeasured warm-up. Time to "
        "first token runs from the call to the first text; tokens/s per stream is tokens over that stream's time "
        "to its last text (median over streams); aggregate is all tokens over the workload's wall time (median over "
        "rounds); inter-token latency is the gap between successive pieces of text as the client receives them. "
        "Gateway CPU and peak RSS are read from /proc for the gateway process (and its children); client CPU is the "
        "benchmark process's own, which holds every client.\n\n"
        f"Machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, {versions}. The "
        "upstream, the gateway and the clients share these cores, so absolute figures move from run to run and "
        "machine to machine: compare the ratios, which come from the same run."
    )


def error_note(results: Results) -> str:
    errors = [f"{' / '.join(key)}: `{summary.first_error}`" for key, summary in results.items() if summary.first_error]
    return "\n\nFirst error of each contender that had any: " + "; ".join(errors) if errors else ""
