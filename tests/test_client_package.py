"""The client package: importable stubs with typing, a wheel of its own, and a working minimal client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import TINY_MODEL
from warpcore.client import Client, text_deltas
from warpcore.server.app import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent


def test_client_builds_as_a_wheel_with_stubs_and_typing(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT / "client")],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("warpcore_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("inference_pb2", "inference_pb2_grpc"):
        assert f"warpcore/v1/{module}.py" in names
        assert f"warpcore/v1/{module}.pyi" in names
    assert {"warpcore/client/__init__.py", "warpcore/client/py.typed", "warpcore/v1/py.typed"} <= names
    assert not any(name.startswith("warpcore/server") for name in names)


def test_stubs_import_under_the_proto_package() -> None:
    assert pb.DESCRIPTOR.package == "warpcore.v1"
    assert pb.__name__ == "warpcore.v1.inference_pb2"


async def test_minimal_client_round_trip(server: WarpcoreServer) -> None:
    def use_client() -> tuple[list[str], str, list[str]]:
        with Client(f"127.0.0.1:{server.port}", timeout=30) as client:
            loaded = client.load_model(TINY_MODEL, model_id="tiny")
            pieces = list(text_deltas(client.generate("tiny", prompt="the", max_tokens=5)))
            listed = [model.id for model in client.list_models()]
            client.unload_model("tiny")
            return pieces, loaded.id, listed

    pieces, loaded_id, listed = await asyncio.to_thread(use_client)
    assert loaded_id == "tiny"
    assert listed == ["tiny"]
    assert len(pieces) == 5
    assert all(pieces)
