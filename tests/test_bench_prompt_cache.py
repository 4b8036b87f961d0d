"""The prompt-cache benchmark cannot rot: a smoke run on the tiny model, its result file and its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tiny_model import CONTEXT
from warpcore.server.adapters.llama.context import PREFILL_PIECE as PIECE  # how near its cap a full cache is

REPO = Path(__file__).resolve().parents[1]
CHAT = ["warpcore cache", "warpcore no cache", "xllamacpp n_parallel=1"]
SHARED = ["warpcore parallel=4 cache", "warpcore parallel=4 no cache", "xllamacpp n_parallel=4"]
SMOKE_TURNS = 3


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    for module in ("bench.prompt_cache", "bench.report"):
        subprocess.run([sys.executable, "-m", module, "--out", str(out), "--smoke"], cwd=REPO, check=True, timeout=240)
    return out


@pytest.fixture(scope="module")
def data(results: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((results / "prompt_cache.json").read_text())
    for chart in loaded["charts"]:
        assert (results / chart).read_bytes().startswith(b"\x89PNG")
    return loaded


def table(data: dict[str, Any], index: int) -> dict[str, list[Any]]:
    """A table's rows by their first cell."""
    return {row[0]: row[1:] for row in data["tables"][index]["rows"]}


def test_multi_turn_chat_measures_every_contender_and_warpcore_hits_its_cache(data: dict[str, Any]) -> None:
    rows = table(data, 0)
    assert list(rows) == CHAT
    for name, (first_turn, later_turns, _, _, same) in rows.items():
        assert first_turn > 0, name
        assert later_turns > 0, name
        assert same.endswith(f"/{SMOKE_TURNS}"), name
    _, _, cached, prompt_tokens, same = rows["warpcore cache"]
    # Later turns start from the previous turn's prompt, at least its first piece.
    assert cached >= PIECE
    assert rows["warpcore no cache"][2] == 0
    assert prompt_tokens == rows["warpcore no cache"][3]
    # Greedy text with cache hits is the text without the cache, turn for turn.
    assert same == f"{SMOKE_TURNS}/{SMOKE_TURNS}"


def test_a_chat_at_a_persons_pace_finds_the_answer_decoded_ahead(data: dict[str, Any]) -> None:
    rows = table(data, 1)
    assert list(rows) == ["warpcore cache", "xllamacpp n_parallel=1"]
    for name, (later_turns, _, _) in rows.items():
        assert later_turns > 0, name
    # Counted for every later turn (on the tiny model an answer's tokens, read again, may part from those
    # sampled at once; on Gemma it is decoded ahead whole: test_prompt_in_place.py).
    assert rows["warpcore cache"][2].endswith(f"/{SMOKE_TURNS - 1}")


def test_shared_system_prompt_callers_start_from_the_warm_up_callers_cells(data: dict[str, Any]) -> None:
    rows = table(data, 2)
    assert list(rows) == SHARED
    for name, (warm, callers, slowest, _, later, _) in rows.items():
        assert warm > 0, name
        assert 0 < callers <= slowest, name
        assert later > 0, name
    assert rows["warpcore parallel=4 cache"][3] >= PIECE
    assert rows["warpcore parallel=4 cache"][5] >= rows["warpcore parallel=4 cache"][3]
    assert rows["warpcore parallel=4 no cache"][3] == rows["warpcore parallel=4 no cache"][5] == 0


def test_ratios_and_targets_pair_warpcore_with_its_peers(data: dict[str, Any]) -> None:
    ratios = data["tables"][3]["rows"]
    assert [(workload, ratio) for workload, ratio, _ in ratios] == [
        ("multi-turn chat", "warpcore no cache / warpcore cache"),
        ("multi-turn chat", "xllamacpp n_parallel=1 / warpcore cache"),
        ("multi-turn chat at a person's pace", "xllamacpp n_parallel=1 / warpcore cache"),
        ("shared system prompt", "warpcore parallel=4 no cache / warpcore parallel=4 cache"),
        ("shared system prompt", "xllamacpp n_parallel=4 / warpcore parallel=4 cache"),
        ("shared system prompt, a later caller alone", "xllamacpp n_parallel=4 / warpcore parallel=4 cache"),
    ]
    assert all(value > 0 for _, _, value in ratios)
    values = {ratio: value for workload, ratio, value in ratios if "later" not in workload and "pace" not in workload}
    targets = data["targets"]
    assert [(target["op"], target["threshold"]) for target in targets] == [(">=", 5.0), (">=", 1.0), (">=", 2.0)]
    assert [target["value"] for target in targets] == [
        values["warpcore no cache / warpcore cache"],
        values["xllamacpp n_parallel=1 / warpcore cache"],
        values["xllamacpp n_parallel=4 / warpcore parallel=4 cache"],
    ]
    for target in targets:
        assert target["met"] is (target["value"] >= target["threshold"])
    assert data["charts"] == ["prompt_cache_turns.png", "prompt_cache_shared.png"]


def test_memory_is_read_with_the_cache_full_at_its_default_cap(data: dict[str, Any]) -> None:
    rows = table(data, 4)
    assert list(rows) == ["warpcore cache", "warpcore no cache"]
    capacity, cached, prompts, loaded, filled = rows["warpcore cache"]
    assert capacity == CONTEXT  # the default cap: the model's context size
    assert capacity - PIECE <= cached <= capacity
    assert prompts >= 1
    assert loaded > 0
    assert filled > 0
    assert rows["warpcore no cache"][:3] == [0, 0, prompts]


def test_report_renders_the_prompt_cache_bench(results: Path, data: dict[str, Any]) -> None:
    readme = (results / "README.md").read_text()
    assert f"## {data['title']}\n" in readme
    for target in data["targets"]:
        assert f"| prompt_cache | {target['name']} | " in readme
    for table_data in data["tables"]:
        assert "| " + " | ".join(table_data["columns"]) + " |" in readme
    for chart in data["charts"]:
        assert f"![{chart}]({chart})" in readme
