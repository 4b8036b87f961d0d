"""The client package: importable stubs with typing, a wheel of its own, and the public surface the docs list."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import warpcore.client
from warpcore.v1 import inference_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent


def test_client_builds_as_a_wheel_with_stubs_typing_and_cli(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT / "client")],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("warpcore_client-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for module in ("inference_pb2", "inference_pb2_grpc"):
        assert f"warpcore/v1/{module}.py" in names
        assert f"warpcore/v1/{module}.pyi" in names
    assert {"warpcore/client/__init__.py", "warpcore/client/py.typed", "warpcore/v1/py.typed"} <= names
    assert "warpcore/_client_cli.py" in names  # the console script, outside warpcore.client: see its docstring
    assert not any(name.startswith("warpcore/server") for name in names)
    # The licence the metadata declares, in its text: the repository's LICENSE.
    assert "License-Expression: Apache-2.0" in archive.read("warpcore_client-0.1.0.dist-info/METADATA").decode()
    licence = archive.read("warpcore_client-0.1.0.dist-info/licenses/LICENSE")
    assert licence == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in licence
    (entry_points,) = [name for name in names if name.endswith("entry_points.txt")]
    assert "warpcore = warpcore._client_cli:main" in archive.read(entry_points).decode()


def test_stubs_import_under_the_proto_package() -> None:
    assert pb.DESCRIPTOR.package == "warpcore.v1"
    assert pb.__name__ == "warpcore.v1.inference_pb2"


def test_public_surface_is_what_the_readme_lists() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("Public names of `warpcore.client`:") :].split("\n\n")[0]
    documented = set(re.findall(r"`([A-Za-z_]+)`", listed.split(":", 1)[1]))
    assert documented == set(warpcore.client.__all__)
    assert all(hasattr(warpcore.client, name) for name in warpcore.client.__all__)
