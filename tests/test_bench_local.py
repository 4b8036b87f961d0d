"""The benchmark harness cannot rot: smoke runs of the local-model and start-up benchmarks, and the report on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = {
    "llama-cpp-python direct",
    "warpcore parallel=1",
    "warpcore parallel=4",
    "llama_cpp.server",
    "xllamacpp n_parallel=4",
}
SMOKE_TOKENS = 8  # the tiny model never ends a greedy stream early


def bench(module: str, out: Path) -> None:
    subprocess.run([sys.executable, "-m", module, "--out", str(out), "--smoke"], cwd=REPO, check=True, timeout=240)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    bench("bench.local_model", out)
    bench("bench.startup", out)
    bench("bench.report", out)
    return out


def load(results: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((results / f"{name}.json").read_text())
    assert {"title", "description", "tables", "targets", "charts"} <= data.keys()
    for chart in data["charts"]:
        assert (results / chart).read_bytes().startswith(b"\x89PNG")
    for target in data["targets"]:
        assert target["op"] in (">=", "<")
        assert target["met"] is (
            target["value"] >= target["threshold"] if target["op"] == ">=" else target["value"] < target["threshold"]
        )
    return data


def test_local_model_measures_every_contender_at_every_level(results: Path) -> None:
    data = load(results, "local_model")
    measured, ratios = data["tables"]
    columns = " ".join(measured["columns"])
    assert measured["columns"][:3] == ["streams", "contender", "tokens/stream"]
    for metric in ("aggregate tok/s", "slowest stream tok/s", "fastest stream tok/s", "slowest/fastest", "TTFT"):
        assert metric in columns
    assert {(row[0], row[1]) for row in measured["rows"]} == {(level, name) for level in (1, 4) for name in CONTENDERS}
    for streams, name, tokens, aggregate, slowest, fastest, fairness, first_token in measured["rows"]:
        assert tokens == SMOKE_TOKENS, name
        assert 0 < slowest <= fastest, name
        # Rounded to two places: one stream of four that waited for a single slot may round to 0 on a busy machine.
        assert 0 <= fairness <= 1, name
        assert aggregate > 0, name
        assert first_token >= 0, name
        if streams == 1:
            assert fairness == 1, name
    assert {(row[0], row[1]) for row in ratios["rows"]} == {
        ("warpcore parallel=1 / llama-cpp-python direct", 1),
        ("warpcore parallel=4 / llama-cpp-python direct", 1),
        ("warpcore parallel=1 / xllamacpp n_parallel=4 (aggregate)", 4),
        ("warpcore parallel=4 / xllamacpp n_parallel=4 (aggregate)", 4),
    }
    assert all(row[2] > 0 for row in ratios["rows"])
    assert [target["threshold"] for target in data["targets"]] == [0.98, 1.0, 0.8]
    assert data["charts"] == ["local_model_aggregate.png", "local_model_slowest_stream.png", "local_model_ttft.png"]


def test_startup_reaches_serving_with_and_without_the_default_model(results: Path) -> None:
    data = load(results, "startup")
    times, imports = data["tables"]
    medians = {row[0]: row[1] for row in times["rows"]}
    assert set(medians) == {
        "python -c pass",
        "python -c 'import warpcore.server.cli'",
        "warpcore-server, no model",
        "warpcore-server, default model",
    }
    assert 0 < medians["python -c pass"] < medians["warpcore-server, no model"]
    # Loading Gemma comes on top of everything a start without a model does.
    assert medians["warpcore-server, no model"] < medians["warpcore-server, default model"]
    assert imports["rows"]
    assert all(0 < share <= 1 for _, _, share in imports["rows"])
    (target,) = data["targets"]
    assert (target["op"], target["threshold"], target["unit"]) == ("<", 1.5, "s")
    assert target["value"] == medians["warpcore-server, no model"]


def test_report_renders_every_benchmark(results: Path) -> None:
    readme = (results / "README.md").read_text()
    assert readme.startswith("# warpcore benchmarks\n")
    assert "**Smoke run**" in readme
    assert "| benchmark | target | value | threshold | met |" in readme
    for name in ("local_model", "startup"):
        data = load(results, name)
        assert f"## {data['title']}\n" in readme
        for table in data["tables"]:
            assert "| " + " | ".join(table["columns"]) + " |" in readme
            assert f"| {table['rows'][0][0]} | " in readme
        for chart in data["charts"]:
            assert f"![{chart}]({chart})" in readme
    for name in CONTENDERS:
        assert f"| 4 | {name} | {SMOKE_TOKENS} | " in readme
