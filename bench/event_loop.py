"""warpcore-server on uvloop, its default, against the same server on asyncio's own loop (`--event-loop asyncio`):
the time to first token each adds over the vendor SDK straight to the loopback upstream (a one-token answer, a
2,000-token burst) and the gateway's CPU time per token (those, and 64 streams at once), both protocols, same
upstream, same run. The evidence behind the default.

Contenders and their measurement are the API bench's (bench.api_contenders, bench.api_workloads): warpcore's
Python SDK against each server process, interleaved round by round in a rotating order with SDK direct.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.api_contenders import API_KEY, DIRECT, Contender, VendorSdk, Warpcore
from bench.api_gateway import WARPCORE_LIMITS
from bench.api_report import cell, difference
from bench.api_upstream import ANTHROPIC_PREFIX, FAST_MODEL, OPENAI_PREFIX, raise_open_file_limit
from bench.api_workloads import PROTOCOLS, SMOKE_WARMUP, WARMUP, Summary, Workload, measure
from bench.harness import (
    BenchResult,
    ContenderProcess,
    Table,
    free_port,
    python_module,
    wait_for_line,
    wait_grpc_serving,
)

NAME = "event_loop"
LOOPS = ("uvloop", "asyncio")
FULL = (
    Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 60),
    Workload("1 stream x 2,000 tokens", 1, 2000, FAST_MODEL, 20),
    Workload("64 streams x 200 tokens", 64, 200, FAST_MODEL, 5),
)
SMOKE = (Workload("1 stream x 1 token", 1, 1, FAST_MODEL, 2), Workload("4 streams x 20 tokens", 4, 20, FAST_MODEL, 1))
Results = dict[tuple[str, str, str], Summary]


def contender_name(loop: str) -> str:
    return f"warpcore on {loop}"


async def start_contenders(work: Path, processes: list[ContenderProcess]) -> list[Contender]:
    """The upstream and one warpcore-server per event loop, each a process of its own (appended to `processes` as
    it starts) with the upstream's models loaded; SDK direct first."""
    upstream_process = await ContenderProcess.start("upstream", python_module("bench.api_upstream"), work, None, None)
    processes.append(upstream_process)
    upstream = "http://" + (await wait_for_line(upstream_process, "listening on ")).rsplit(" ", 1)[1]
    contenders: list[Contender] = [
        VendorSdk(DIRECT, f"{upstream}{OPENAI_PREFIX}/v1", upstream + ANTHROPIC_PREFIX, API_KEY, prefixed=False)
    ]
    for loop in LOOPS:
        target = f"127.0.0.1:{free_port()}"
        server = python_module("warpcore.server", f"--listen={target}", "--no-default-model", f"--event-loop={loop}")
        process = await ContenderProcess.start(loop, [*server, "--grace=1", *WARPCORE_LIMITS], work, None, None)
        processes.append(process)
        await wait_grpc_serving(target, process)
        warpcore = Warpcore(process, target)
        warpcore.name = contender_name(loop)
        contenders.append(warpcore)
        await warpcore.load(upstream)
    return contenders


def report(results: Results, workloads: Sequence[Workload]) -> BenchResult:
    names = [contender_name(loop) for loop in LOOPS]
    columns = ["workload", "protocol", f"{DIRECT} TTFT", *(f"{name} TTFT" for name in names)]
    columns += [f"added on {loop}" for loop in LOOPS] + [f"gateway CPU s / 1k tokens on {loop}" for loop in LOOPS]
    columns += ["asyncio's CPU / uvloop's", "errors"]
    rows: list[list[float | int | str]] = []
    for workload in workloads:
        for protocol in PROTOCOLS:
            direct = results[workload.label, protocol, DIRECT]
            servers = [results[workload.label, protocol, name] for name in names]
            cpu = [server.gateway_cpu_per_1k for server in servers]
            rows.append(
                [
                    workload.label,
                    protocol,
                    cell(direct.ttft_median_ms),
                    *(cell(server.ttft_median_ms) for server in servers),
                    *(cell(difference(server.ttft_median_ms, direct.ttft_median_ms)) for server in servers),
                    *(cell(value, 4) for value in cpu),
                    cell(cpu[1] / cpu[0] if cpu[0] and cpu[1] is not None else None, 3),
                    direct.errors + sum(server.errors for server in servers),
                ]
            )
    listed = "; ".join(f"{workload.label}: {workload.rounds} round(s)" for workload in workloads)
    description = (
        "The same `warpcore-server` twice, on uvloop (`--event-loop uvloop`, the default) and on asyncio's own loop "
        "(`--event-loop asyncio`), each a process of its own with the API bench's upstream models loaded, called "
        "through warpcore's Python SDK; the vendor SDK straight to the upstream (its default httpx2 client) is the "
        "baseline. Contenders are interleaved round by round in a rotating order, after an unmeasured warm-up. "
        f"{listed}. Times to first token are medians in ms, from the call to the first text; a server's CPU time "
        "is read from /proc around each run, over the tokens it streamed."
    )
    caption = "Time to first token (medians, ms), what each event loop adds over SDK direct, and gateway CPU"
    return BenchResult(
        title="Event loop: warpcore-server on uvloop against asyncio's own loop",
        description=description,
        tables=[Table(caption, columns, rows)],
        targets=[],
        charts=[],
    )


async def main(out: Path, smoke: bool) -> None:
    processes: list[ContenderProcess] = []
    workloads = SMOKE if smoke else FULL
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-loop-") as work:
        try:
            contenders = await start_contenders(Path(work), processes)
            try:
                results = await measure(contenders, None, [], workloads, SMOKE_WARMUP if smoke else WARMUP)
            finally:
                for contender in contenders:
                    await contender.close()
        finally:
            for process in reversed(processes):
                await process.stop()
    print(f"wrote {report(results, workloads).write(out, NAME)}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the result file")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, seconds: checks that every part runs")
    arguments = parser.parse_args()
    raise_open_file_limit()
    arguments.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(arguments.out, arguments.smoke))
