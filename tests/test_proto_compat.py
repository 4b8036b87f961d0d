"""The protocol stays wire- and source-compatible with its released baseline image (`buf breaking`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules" / ".bin" / "buf"
BASELINE = ROOT / "proto" / "releases" / "warpcore-v1.binpb"
PROTO_FILE = Path("warpcore") / "v1" / "inference.proto"
EXIT_BREAKING = 100  # buf's exit code for "breaking changes found"; other failures exit 1


def buf_breaking(module: Path) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), f"{BUF} is missing: run `make setup`"
    command = [str(BUF), "breaking", str(module), "--against", str(BASELINE), "--error-format", "json"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_proto_is_compatible_with_released_baseline() -> None:
    result = buf_breaking(Path("proto"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "changed"),
    [
        pytest.param("  string prompt = 2;\n", "  string prompt = 9;\n", id="renumbered"),
        pytest.param("  string upstream_request_id = 4;\n", "", id="deleted"),
    ],
)
def test_breaking_change_is_caught(tmp_path: Path, original: str, changed: str) -> None:
    module = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", module, ignore=shutil.ignore_patterns("releases"))
    proto = module / PROTO_FILE
    source = proto.read_text()
    assert source.count(original) == 1, f"the proto no longer has exactly one {original.strip()!r} to change"
    proto.write_text(source.replace(original, changed))

    result = buf_breaking(module)

    assert result.returncode == EXIT_BREAKING, result.stdout + result.stderr
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {finding["type"] for finding in findings} == {"FIELD_NO_DELETE"}, findings
