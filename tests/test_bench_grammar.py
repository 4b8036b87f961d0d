"""The grammar benchmark cannot rot: a smoke run, through bench.run as `make bench` runs it, and its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_grammar_bench_measures_both_cases_and_reports_the_ratio(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.run", "--out", str(tmp_path), "--smoke", "--only", "grammar"]
    subprocess.run(command, cwd=REPO, check=True, timeout=240)
    data = json.loads((tmp_path / "grammar.json").read_text())
    (table,) = data["tables"]
    rates = {row[0]: row[1] for row in table["rows"]}
    assert set(rates) == {"unconstrained", "JSON Schema grammar"}
    assert all(rate > 0 for rate in rates.values())
    assert all(row[5] == 2 for row in table["rows"])  # both cases in every round
    (target,) = data["targets"]
    assert (target["op"], target["threshold"], target["unit"]) == (">=", 0.9, "x")
    # The table shows each rate to a tenth, the target's ratio is of the rates measured: equal within that rounding.
    constrained, free = rates["JSON Schema grammar"], rates["unconstrained"]
    assert abs(target["value"] - constrained / free) <= 0.05 / free + constrained * 0.05 / free**2 + 0.001
    assert (tmp_path / data["charts"][0]).read_bytes().startswith(b"\x89PNG")
    readme = (tmp_path / "README.md").read_text()
    assert "## Grammar-constrained local generation\n" in readme
    assert "| JSON Schema grammar | " in readme
