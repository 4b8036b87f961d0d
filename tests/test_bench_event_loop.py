"""The event-loop benchmark's smoke version: both servers and SDK direct stream both protocols, and the report holds
each workload's figures, its added times consistent with its times to first token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_both_loops_stream_both_protocols_and_the_report_adds_up(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.event_loop", "--out", str(tmp_path), "--smoke"], cwd=ROOT, check=True, timeout=240
    )
    (table,) = json.loads((tmp_path / "event_loop.json").read_text())["tables"]
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
    assert [(row["workload"], row["protocol"]) for row in rows] == [
        (workload, protocol)
        for workload in ("1 stream x 1 token", "4 streams x 20 tokens")
        for protocol in ("openai", "anthropic")
    ]
    for row in rows:
        assert row["errors"] == 0, row
        for loop in ("uvloop", "asyncio"):
            ttft = row[f"warpcore on {loop} TTFT"]
            assert isinstance(ttft, float)
            assert ttft > 0
            assert row[f"added on {loop}"] == pytest.approx(ttft - row["SDK direct TTFT"], abs=0.011)
            assert isinstance(row[f"gateway CPU s / 1k tokens on {loop}"], float | int)
