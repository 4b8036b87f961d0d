"""The server's layers, read from its source: only rpc/ speaks gRPC, and nothing below it reaches back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[1] / "server" / "warpcore" / "server"
GRPC_MODULES = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "google.protobuf", "google.rpc", "warpcore.v1")
MAX_MODULE_LINES = 300


def modules() -> list[Path]:
    return sorted(SERVER.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def layer(path: Path) -> str:
    return path.relative_to(SERVER).parts[0].removesuffix(".py")


def uses(names: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {name for name in names if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)}


def test_the_walk_sees_every_layer() -> None:
    # A walk that found nothing would let every check below pass.
    assert {"rpc", "http", "core", "adapters"} <= {layer(path) for path in modules()}
    assert uses(imported(SERVER / "rpc" / "servicer.py"), GRPC_MODULES)


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVER)))
def test_only_rpc_imports_grpc_or_the_generated_stubs(path: Path) -> None:
    if layer(path) != "rpc":
        assert not uses(imported(path), GRPC_MODULES)


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVER)))
def test_the_core_and_the_adapters_never_import_a_front_door(path: Path) -> None:
    if layer(path) in ("core", "adapters"):
        assert not uses(imported(path), ("warpcore.server.rpc", "warpcore.server.cli"))
    if layer(path) == "adapters":
        assert not uses(imported(path), ("warpcore.server.core.engine", "warpcore.server.core.registry"))


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVER)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVER)))
def test_the_front_doors_never_import_each_other(path: Path) -> None:
    # What both need (auth, access log, the engine) lives in core/; doors.py composes them.
    doors = {"rpc": "warpcore.server.rpc", "http": "warpcore.server.http"}
    if layer(path) in doors:
        others = tuple(prefix for name, prefix in doors.items() if name != layer(path))
        assert not uses(imported(path), others)
