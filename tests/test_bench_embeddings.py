"""The embeddings benchmark cannot rot: a smoke run on the tiny model, and its result file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_bench_local import REPO


def test_embeddings_bench_smoke(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.embeddings", "--out", str(tmp_path), "--smoke"], cwd=REPO, check=True, timeout=240
    )
    data = json.loads((tmp_path / "embeddings.json").read_text())
    (table,) = data["tables"]
    assert [row[0] for row in table["rows"]] == ["llama-cpp-python Llama.embed", "warpcore Embed"]
    assert all(row[1] > 0 for row in table["rows"])
    (target,) = data["targets"]
    assert (target["op"], target["threshold"], target["unit"]) == (">=", 0.9, "x")
    direct, warpcore = (row[1] for row in table["rows"])
    assert target["value"] == pytest.approx(warpcore / direct, rel=0.01)
    assert (tmp_path / data["charts"][0]).read_bytes().startswith(b"\x89PNG")
    subprocess.run([sys.executable, "-m", "bench.report", "--out", str(tmp_path), "--smoke"], cwd=REPO, check=True)
    assert "Local embeddings" in (tmp_path / "README.md").read_text()
