"""The HTTP door bench's report: a table per workload, the issue's two targets per dialect, one chart."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

from bench.api_contenders import DIRECT, LITELLM
from bench.api_report import cell, difference
from bench.api_workloads import PROTOCOLS, Summary, Workload
from bench.charts import grouped_bar_chart
from bench.harness import BenchResult, Cell, Table, Target
from bench.report import cpu_model

NAME = "http_door"
DOOR = "warpcore HTTP"
HTTP_FLOOR = "bare aiohttp proxy"
COLUMNS = [
    "protocol",
    "contender",
    "TTFT median (ms)",
    "TTFT p99 (ms)",
    "aggregate tokens/s",
    "inter-token p99 (ms)",
    "gateway CPU s / 1k tokens",
    "client CPU s / 1k tokens",
    "gateway peak RSS (MiB)",
    "errors",
]


def report(
    results: dict[tuple[str, str, str], Summary],
    workloads: Sequence[Workload],
    contenders: Sequence[str],
    litellm_version: str,
    out: Path,
) -> BenchResult:
    tables = [
        Table(
            caption=workload.label,
            columns=COLUMNS,
            rows=[
                _row(protocol, name, results[(workload.label, protocol, name)])
                for protocol in PROTOCOLS
                for name in ([*contenders, HTTP_FLOOR] if workload.floor else contenders)
            ],
        )
        for workload in workloads
    ]
    tables += [_added_ttft(results, workload) for workload in workloads if workload.floor]
    tables += [_cpu(results, workload) for workload in workloads if not workload.floor]
    return BenchResult(
        title="The HTTP door: each vendor SDK against warpcore's door, LiteLLM and the upstream itself",
        description=_description(workloads, litellm_version),
        tables=tables,
        targets=targets(results, workloads),
        charts=[_chart(results, workloads, contenders, out)],
    )


def _row(protocol: str, name: str, summary: Summary) -> list[Cell]:
    return [
        protocol,
        name,
        cell(summary.ttft_median_ms),
        cell(summary.ttft_p99_ms),
        cell(summary.aggregate_tokens_per_second, 0),
        cell(summary.itl_p99_ms),
        cell(summary.gateway_cpu_per_1k, 3),
        cell(summary.client_cpu_per_1k, 3),
        cell(summary.peak_rss_mib, 0),
        summary.errors,
    ]


def _added_ttft(results: dict[tuple[str, str, str], Summary], workload: Workload) -> Table:
    """Each gateway's median time to first token over the SDK's straight to the upstream, beside the bare proxy's:
    what a hop costs on this machine before a gateway does anything."""
    rows: list[list[Cell]] = []
    for protocol in PROTOCOLS:
        direct, door, floor = (results[(workload.label, protocol, name)] for name in (DIRECT, DOOR, HTTP_FLOOR))
        door_added = difference(door.ttft_median_ms, direct.ttft_median_ms)
        floor_added = difference(floor.ttft_median_ms, direct.ttft_median_ms)
        beyond = difference(door_added, floor_added)
        rows.append([protocol, cell(door_added), cell(floor_added), cell(beyond)])
    return Table(
        caption=f"Time to first token added over SDK direct, medians in ms ({workload.label})",
        columns=["protocol", DOOR, HTTP_FLOOR, f"{DOOR} beyond the {HTTP_FLOOR}"],
        rows=rows,
    )


def _cpu(results: dict[tuple[str, str, str], Summary], workload: Workload) -> Table:
    """Where the CPU goes under concurrency: each gateway's per token, and the clients' through warpcore. The
    clients are one Python process, which reads at most 1,000 / (its CPU seconds per 1k tokens) tokens/s on its
    core however little the gateway costs: on a host whose cores the clients, the gateway and the upstream share,
    that ceiling bounds the door's aggregate, and with it any ratio to LiteLLM's."""
    rows: list[list[Cell]] = []
    for protocol in PROTOCOLS:
        door, litellm = (results[(workload.label, protocol, name)] for name in (DOOR, LITELLM))
        cpu_ratio = (
            litellm.gateway_cpu_per_1k / door.gateway_cpu_per_1k
            if litellm.gateway_cpu_per_1k and door.gateway_cpu_per_1k
            else None
        )
        ceiling = 1000 / door.client_cpu_per_1k if door.client_cpu_per_1k else None
        rows.append(
            [
                protocol,
                cell(door.gateway_cpu_per_1k, 4),
                cell(litellm.gateway_cpu_per_1k, 4),
                cell(cpu_ratio),
                cell(door.client_cpu_per_1k, 4),
                cell(ceiling, 0),
                cell(door.aggregate_tokens_per_second, 0),
            ]
        )
    return Table(
        caption=f"Where the CPU goes ({workload.label})",
        columns=[
            "protocol",
            f"{DOOR} gateway CPU s / 1k tokens",
            f"{LITELLM} gateway CPU s / 1k tokens",
            f"{LITELLM} / {DOOR} gateway CPU per token",
            f"client CPU s / 1k tokens through {DOOR}",
            "tokens/s the client process can read at most",
            f"{DOOR} aggregate tokens/s",
        ],
        rows=rows,
    )


def targets(results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload]) -> list[Target]:
    """Per dialect: added median time to first token over SDK direct (the latency probe), and aggregate tokens/s
    against LiteLLM (the concurrent workload). A figure that could not be measured is not met."""
    single, concurrent = workloads
    made = []
    for protocol in PROTOCOLS:
        direct, door = (results[(single.label, protocol, name)] for name in (DIRECT, DOOR))
        wide_door, wide_litellm = (results[(concurrent.label, protocol, name)] for name in (DOOR, LITELLM))
        added = difference(door.ttft_median_ms, direct.ttft_median_ms)
        ratio = (
            wide_door.aggregate_tokens_per_second / wide_litellm.aggregate_tokens_per_second
            if wide_litellm.aggregate_tokens_per_second
            else None
        )
        measured: list[tuple[str, float | None, Literal[">=", "<"], float, str]] = [
            (f"{protocol}: added median TTFT over SDK direct ({single.label})", added, "<", 2.0, "ms"),
            (f"{protocol}: aggregate tokens/s, warpcore / LiteLLM ({concurrent.label})", ratio, ">=", 5.0, "x"),
        ]
        for name, value, op, threshold, unit in measured:
            shown = value if value is not None else (threshold if op == "<" else 0.0)
            made.append(Target(name, round(shown, 3), op, threshold, unit))
    return made


def _chart(
    results: dict[tuple[str, str, str], Summary], workloads: Sequence[Workload], contenders: Sequence[str], out: Path
) -> str:
    filename = f"{NAME}_aggregate.png"
    panels = {
        protocol: {
            name: [results[(workload.label, protocol, name)].aggregate_tokens_per_second for workload in workloads]
            for name in contenders
        }
        for protocol in PROTOCOLS
    }
    labels = [workload.label for workload in workloads]
    grouped_bar_chart(out / filename, "Aggregate tokens/s", "tokens/s", labels, panels, log_y=True)
    return filename


def _description(workloads: Sequence[Workload], litellm_version: str) -> str:
    rounds = ", ".join(f"{workload.label}: {workload.rounds} rounds" for workload in workloads)
    return (
        "The same vendor SDK code (openai for the OpenAI dialect, anthropic for the Anthropic one, each with its"
        " default httpx2 client) streams from the loopback upstream of the API bench three ways: straight to it"
        f" (SDK direct), through warpcore's HTTP door (`--http-port`), and through LiteLLM {litellm_version}'s"
        " proxy (`/v1/chat/completions`, `/v1/messages`), each gateway a process of its own with the same models of"
        " the same upstream. In the latency probe, the same SDK code also goes through a bare aiohttp proxy on uvloop"
        " (`bench/http_floor.py`) that forwards the request's bytes and streams the answer's back, with no parsing,"
        " validation, translation or SDK: the time to first token no Python HTTP gateway on this machine can beat."
        " Contenders are interleaved round by round. "
        f"{rounds}. Host: {cpu_model()}, {platform.python_implementation()} {platform.python_version()},"
        f" openai {metadata.version('openai')}, anthropic {metadata.version('anthropic')},"
        f" aiohttp {metadata.version('aiohttp')}."
    )
