"""Start-up: nothing left to do once the server says SERVING, its heap settled, and a first set-up that says what it
builds."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from warpcore.server.heap import YOUNG_COLLECTION_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
BUILD_WHEEL = ROOT / "scripts" / "build-llama-wheel.sh"
PIN = "llama_cpp_python==0.3.36"

# `warpcore-server --no-default-model` as `main` runs it, in a process of its own; once health says SERVING it
# waits for every job the server handed to the default executor (a background warm-up runs there), then prints the
# heavy modules it has imported and the garbage collector's state, and stops the server with SIGTERM as an operator
# would.
SERVE_AND_REPORT = textwrap.dedent(
    """
    import asyncio, gc, json, logging, os, signal, sys

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from warpcore.server.cli import serve
    from warpcore.server.settings import parse_settings

    HEAVY = ("openai", "anthropic", "httpx2", "llama_cpp")


    class Serving(logging.Handler):
        def __init__(self, event):
            super().__init__()
            self.event = event

        def emit(self, record):
            if "serving on" in record.getMessage():
                self.event.set()


    async def main(address):
        settings = parse_settings(["--listen", address, "--no-default-model", "--grace", "0"], os.environ)
        logged = asyncio.Event()
        logger = logging.getLogger("warpcore.server")
        logger.setLevel(logging.INFO)
        logger.addHandler(Serving(logged))
        server = asyncio.ensure_future(serve(settings, os.environ))
        await asyncio.wait([server, asyncio.ensure_future(logged.wait())], return_when=asyncio.FIRST_COMPLETED)
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await asyncio.get_running_loop().shutdown_default_executor()
        imported = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)
        print(json.dumps({"status": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                          "imported": imported, "frozen": gc.get_freeze_count(),
                          "young_threshold": gc.get_threshold()[0]}), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        await server
        print(json.dumps({"frozen": gc.get_freeze_count(), "young_threshold": gc.get_threshold()[0]}), flush=True)


    asyncio.run(main(sys.argv[1]))
    """
)


async def test_once_serving_the_server_has_imported_no_backend_it_has_not_used_and_frozen_what_it_did(
    models_path: Path, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", SERVE_AND_REPORT, f"unix://{tmp_path / 'warpcore.sock'}"),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    serving, stopped = map(json.loads, stdout.splitlines())
    assert {key: serving[key] for key in ("status", "imported")} == {"status": "SERVING", "imported": []}
    # What start-up left is out of the collector's walks while serving (grpc and protobuf alone are tens of
    # thousands of objects), young objects are collected less often, and both are as they were once stopped.
    assert serving["frozen"] > 10_000
    assert serving["young_threshold"] == YOUNG_COLLECTION_THRESHOLD
    assert stopped == {"frozen": 0, "young_threshold": gc.get_threshold()[0]}


def build_wheel(cache: Path, pip: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true", "TMPDIR": str(cache.parent)}
    return subprocess.run(
        [str(BUILD_WHEEL), str(pip), str(cache), PIN],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
    )


def fake_pip(tmp_path: Path, body: str) -> Path:
    """A stand-in for pip that records each call in calls.txt, then runs `body` (bash)."""
    pip = tmp_path / "pip"
    pip.write_text(f'#!/usr/bin/env bash\necho "$@" >> {tmp_path / "calls.txt"}\n{body}\n')
    pip.chmod(0o755)
    return pip


def test_a_cached_llama_wheel_is_neither_announced_nor_built(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_bytes(b"")
    pip = fake_pip(tmp_path, "exit 1")
    built = build_wheel(cache, pip)
    assert (built.returncode, built.stdout, built.stderr) == (0, "", "")
    assert not (tmp_path / "calls.txt").exists()


def test_the_first_llama_build_says_what_why_and_once_and_shows_progress_without_a_terminal(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    (cache / "llama_cpp_python-0.3.35-py3-none-linux_x86_64.whl").parent.mkdir()
    (cache / "llama_cpp_python-0.3.35-py3-none-linux_x86_64.whl").write_bytes(b"")  # another version
    steps = "\n".join(f'echo "  [{step}/20] /usr/bin/g++ -c unity_{step}.cxx"' for step in range(1, 21))
    wheel = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    into_wheel_dir = f'while [ "$1" != --wheel-dir ]; do shift; done; touch "$2/{wheel}"'
    pip = fake_pip(tmp_path, f'echo "Building wheel for llama_cpp_python"\n{steps}\n{into_wheel_dir}')
    built = build_wheel(cache, pip)
    assert built.returncode == 0, built.stderr
    lines = built.stdout.splitlines()
    assert lines[0].startswith("Building llama_cpp_python 0.3.36 from source: this happens once per machine")
    assert "source only" in built.stdout
    assert "compiled for this CPU" in built.stdout
    assert str(cache) in built.stdout
    progress = [line.split()[2] for line in lines if line.startswith("  compiling llama.cpp:")]
    assert progress == ["5%"] + [f"{percent}%" for percent in range(10, 101, 10)]  # from the first step, each tenth
    assert lines[-1].startswith("Built llama_cpp_python 0.3.36 in ")
    assert (tmp_path / "calls.txt").read_text().split() == [
        "wheel",
        "-v",
        "--no-cache-dir",
        "--no-deps",
        "--find-links",
        str(cache),
        "--wheel-dir",
        str(cache),
        PIN,
    ]
    again = build_wheel(cache, pip)  # the wheel it built is found: silence, and no second build
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1


def test_a_failed_llama_build_shows_the_end_of_its_log(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    pip = fake_pip(tmp_path, 'echo "[1/20] compiling"\necho "error: no compiler" >&2\nexit 1')
    built = build_wheel(cache, pip)
    assert built.returncode == 1
    assert "error: no compiler" in built.stderr
    assert "Building llama_cpp_python 0.3.36 failed; the whole build log is" in built.stderr
