"""The client package: importable stubs with typing, a wheel of its own, and the public surface the docs list."""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import importlib.util
import itertools
import re
import subprocess
import sys
import tomllib
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


def _runtime_imports(source: str) -> set[str]:
    """The modules a file imports when it runs: those under `if TYPE_CHECKING:` are for type checkers only."""
    tree = ast.parse(source)
    checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    modules: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _owner(module: str) -> str | None:
    """The installed distribution whose files hold `module` (the module itself, or the package it is a name in)."""
    spec = None
    for name in (module, module.rpartition(".")[0]):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name) if name else None
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            break
    assert spec is not None, module
    assert spec.origin is not None, module
    origin = Path(spec.origin).resolve()
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            if Path(str(distribution.locate_file(file))).resolve() == origin:
                return canonical(distribution.metadata["Name"])
    return None


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_the_client_imports_comes_from_a_dependency_it_declares() -> None:
    """Found in a published wheel: google.rpc came only through grpcio-status, as one of its own dependencies."""
    declared = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    requirements = [*declared["dependencies"], *itertools.chain(*declared["optional-dependencies"].values())]
    allowed = {canonical(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]) for requirement in requirements}
    sources = (ROOT / "client" / "src" / "warpcore").rglob("*.py")
    imported = set().union(*(_runtime_imports(path.read_text()) for path in sources))
    third_party = {
        module
        for module in imported
        if module.split(".")[0] not in sys.stdlib_module_names and not module.startswith("warpcore")
    }
    assert "google.rpc.error_details_pb2" in third_party
    owners = {module: _owner(module) for module in third_party}
    assert {module: owner for module, owner in owners.items() if owner not in allowed} == {}


def test_the_command_and_the_package_tell_the_installed_version() -> None:
    installed = importlib.metadata.version("warpcore-client")
    assert warpcore.client.__version__ == installed
    told = subprocess.run(
        [str(Path(sys.executable).with_name("warpcore")), "--version"], capture_output=True, text=True, check=True
    )
    assert told.stdout == f"warpcore {installed}\n"
