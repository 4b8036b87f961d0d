"""The API gateway benchmark's smoke version: every contender runs, and the report holds every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.api_workloads import upstream_on_own_core
from bench.harness import process_tree

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".venv-litellm"
CONTENDERS = {"SDK direct", "warpcore", "LiteLLM"}
FLOOR = "bare grpc.aio"
RATIOS = "Ratios, same run"
BREAKDOWN = "Where warpcore's time to first token goes, medians in ms, same run"
METRICS = {
    "TTFT median (ms)",
    "TTFT p99 (ms)",
    "tokens/s per stream",
    "aggregate tokens/s",
    "inter-token p99 (ms)",
    "gateway CPU s / 1k tokens",
    "client CPU s / 1k tokens",
    "gateway peak RSS (MiB)",
    "errors",
}

pytestmark = pytest.mark.skipif(
    not (LITELLM_VENV / "bin" / "litellm").exists() and os.environ.get("CI") != "true",
    reason="LiteLLM runs from .venv-litellm (make .venv-litellm); under CI it must be there",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench-api")
    subprocess.run(
        [sys.executable, "-m", "bench.api_gateway", "--out", str(out), "--smoke"],
        cwd=ROOT,
        check=True,
        timeout=240,
    )
    return out, json.loads((out / "api_gateway.json").read_text())


def test_every_contender_streams_both_protocols_without_errors(report: tuple[Path, dict[str, object]]) -> None:
    _, data = report
    tables = data["tables"]
    assert isinstance(tables, list)
    workloads = [table for table in tables if table["caption"] not in (RATIOS, BREAKDOWN)]
    assert len(workloads) == 5
    for index, table in enumerate(workloads):
        assert set(table["columns"]) >= METRICS
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
        names = CONTENDERS | {FLOOR} if index < 3 else CONTENDERS  # the single-stream workloads run the floor too
        assert {(row["protocol"], row["contender"]) for row in rows} == {
            (protocol, name) for protocol in ("openai", "anthropic") for name in names
        }
        for row in rows:
            assert row["errors"] == 0, (table["caption"], row)
            assert isinstance(row["aggregate tokens/s"], float | int)
            assert row["aggregate tokens/s"] > 0
            assert isinstance(row["TTFT median (ms)"], float)
            assert row["TTFT median (ms)"] > 0
            gateway = row["contender"] != "SDK direct"
            assert isinstance(row["gateway CPU s / 1k tokens"], float) == gateway
            assert isinstance(row["gateway peak RSS (MiB)"], float | int) == gateway


def test_ratios_and_targets_are_reported(report: tuple[Path, dict[str, object]]) -> None:
    _, data = report
    ratios = next(table for table in data["tables"] if table["caption"] == RATIOS)  # type: ignore[attr-defined]
    assert len(ratios["rows"]) == 5 * 2
    # Latency and throughput ratios always exist; the CPU ratio is "n/a" when a smoke-sized run used less
    # gateway CPU than the kernel's accounting tick.
    assert all(isinstance(cell, float) for row in ratios["rows"] for cell in row[2:8] + row[9:])
    assert all(isinstance(row[8], float) or row[8] == "n/a" for row in ratios["rows"])
    targets = data["targets"]
    assert isinstance(targets, list)
    assert len(targets) == 6 * 2  # the five, and the added TTFT with the upstream on a core of its own
    assert sum("upstream on a core of its own" in target["name"] for target in targets) == 2
    for target in targets:
        assert set(target) == {"name", "value", "op", "threshold", "unit", "met"}
        assert target["op"] in (">=", "<")
        assert target["met"] == (
            target["value"] >= target["threshold"] if target["op"] == ">=" else target["value"] < target["threshold"]
        )


def test_time_to_first_token_is_split_at_the_servers_clock(report: tuple[Path, dict[str, object]]) -> None:
    _, data = report
    table = next(table for table in data["tables"] if table["caption"] == BREAKDOWN)  # type: ignore[attr-defined]
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
    assert [(row["workload"], row["protocol"]) for row in rows] == [
        (workload, protocol)
        for workload in (
            "1 stream x 1 token",
            "1 stream x 100 tokens, upstream on a core of its own",
            "1 stream x 100 tokens",
        )
        for protocol in ("openai", "anthropic")
    ]
    for row in rows:
        assert all(isinstance(value, float) for value in list(row.values())[2:]), row
        assert row["added"] == pytest.approx(row["warpcore TTFT"] - row["SDK direct TTFT"], abs=0.02)
        # The server reports its own time to first text: less than the client saw, by at least a gRPC round.
        assert 0 < row["server: request in to first text out"] < row["warpcore TTFT"]
        assert row["gRPC leg: client TTFT - server's"] > 0
        assert row["bare grpc.aio TTFT"] > 0


def test_charts_are_pngs(report: tuple[Path, dict[str, object]]) -> None:
    out, data = report
    charts = data["charts"]
    assert isinstance(charts, list)
    assert len(charts) == 3
    for chart in charts:
        assert chart.startswith("api_gateway_")
        assert (out / chart).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert isinstance(data["title"], str)
    assert data["title"]
    assert isinstance(data["description"], str)
    assert "LiteLLM" in data["description"]


def thread_cores(pid: int) -> set[frozenset[int]]:
    """The cores each thread of a process may run on."""
    return {frozenset(os.sched_getaffinity(int(task.name))) for task in Path(f"/proc/{pid}/task").iterdir()}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to separate")
def test_the_upstream_gets_a_core_of_its_own_and_then_every_core_again() -> None:
    everywhere = os.sched_getaffinity(0)
    *others, last = sorted(everywhere)
    two_threads = (
        "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); print('up', flush=True)"
    )
    upstream, gateway = (subprocess.Popen([sys.executable, "-c", two_threads], stdout=subprocess.PIPE) for _ in "ab")
    try:
        for child in (upstream, gateway):
            assert child.stdout is not None
            assert child.stdout.readline() == b"up\n"
        with upstream_on_own_core(process_tree(upstream.pid), process_tree(gateway.pid)):
            assert thread_cores(upstream.pid) == {frozenset({last})}
            assert thread_cores(gateway.pid) == thread_cores(os.getpid()) == {frozenset(others)}
        for pid in (upstream.pid, gateway.pid, os.getpid()):
            assert thread_cores(pid) == {frozenset(everywhere)}
    finally:
        for child in (upstream, gateway):
            child.terminate()
            child.wait()
