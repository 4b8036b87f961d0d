"""The HTTP door benchmark's smoke version: every contender streams both dialects, and the report holds its
tables, both targets per dialect and its chart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".venv-litellm"
CONTENDERS = {"SDK direct", "warpcore HTTP", "LiteLLM"}
FLOOR = "bare aiohttp proxy"

pytestmark = pytest.mark.skipif(
    not (LITELLM_VENV / "bin" / "litellm").exists() and os.environ.get("CI") != "true",
    reason="LiteLLM runs from .venv-litellm (make .venv-litellm); under CI it must be there",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench-http")
    subprocess.run(
        [sys.executable, "-m", "bench.http_door", "--out", str(out), "--smoke"], cwd=ROOT, check=True, timeout=240
    )
    return out, json.loads((out / "http_door.json").read_text())


def test_every_contender_streams_both_dialects_without_errors(report: tuple[Path, dict[str, object]]) -> None:
    _, data = report
    tables = data["tables"]
    assert isinstance(tables, list)
    assert len(tables) == 4
    probe, concurrent, added, cpu = tables
    for table, names in ((probe, {*CONTENDERS, FLOOR}), (concurrent, CONTENDERS)):
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
        assert {(row["protocol"], row["contender"]) for row in rows} == {
            (protocol, name) for protocol in ("openai", "anthropic") for name in names
        }
        for row in rows:
            assert row["errors"] == 0, (table["caption"], row)
            assert isinstance(row["aggregate tokens/s"], float | int)
            assert row["aggregate tokens/s"] > 0
            assert isinstance(row["TTFT median (ms)"], float)
            assert isinstance(row["gateway peak RSS (MiB)"], float | int) == (row["contender"] != "SDK direct")
    # The latency probe's added time to first token, the door's beside the bare proxy's, and their difference.
    assert [row[0] for row in added["rows"]] == ["openai", "anthropic"]
    for _, door, floor, beyond in added["rows"]:
        assert beyond == pytest.approx(door - floor, abs=0.011)
    # Under concurrency, each gateway's CPU per token and the ceiling the clients' own CPU sets.
    assert [row[0] for row in cpu["rows"]] == ["openai", "anthropic"]
    for _, door_cpu, litellm_cpu, ratio, client_cpu, ceiling, aggregate in cpu["rows"]:
        assert min(door_cpu, litellm_cpu, client_cpu) > 0
        assert ratio == pytest.approx(litellm_cpu / door_cpu, rel=0.01)
        assert ceiling == pytest.approx(1000 / client_cpu, rel=0.01)
        assert aggregate > 0


def test_both_targets_per_dialect_and_the_chart(report: tuple[Path, dict[str, object]]) -> None:
    out, data = report
    targets = data["targets"]
    assert isinstance(targets, list)
    assert [(target["op"], target["threshold"], target["unit"]) for target in targets] == [
        ("<", 2.0, "ms"),
        (">=", 5.0, "x"),
    ] * 2
    for target in targets:
        assert target["met"] == (
            target["value"] >= target["threshold"] if target["op"] == ">=" else target["value"] < target["threshold"]
        )
    charts = data["charts"]
    assert isinstance(charts, list)
    assert len(charts) == 1
    assert (out / charts[0]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
