"""The warpcore command refused by a Unix socket's permissions says so (an outside tester's finding: a sidecar's
application outside the socket's group was told that no server answered there, and to start one)."""

from __future__ import annotations

import asyncio
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.any_user import PREFIX
from tests.cli import ENV, WARPCORE, Run, finish

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the capabilities dropped for root are Linux's")

CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"


@pytest.fixture
def refusing_socket(tmp_path: Path) -> Iterator[Path]:
    """A socket listened on whose mode lets no one connect, this test's user included (mode 0)."""
    path = tmp_path / "warpcore.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        listening.listen()
        path.chmod(0)
        yield path


async def run(*command: str) -> Run:
    process = await asyncio.create_subprocess_exec(*PREFIX, *command, stdin=PIPE, stdout=PIPE, stderr=PIPE, env=ENV)
    stdout, stderr = await finish(process)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def test_a_socket_that_refuses_the_user_is_said_to(refusing_socket: Path) -> None:
    probe = await run(sys.executable, "-c", CONNECT, str(refusing_socket))
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"no process here is refused by a socket's mode: {probe.stderr.strip()}")

    refused = await run(WARPCORE, "--target", f"unix://{refusing_socket}", "models")
    assert (refused.code, refused.stdout) == (1, "")
    assert refused.stderr.startswith("warpcore: UNAVAILABLE: ")
    assert "Permission denied" in refused.stderr  # gRPC's words, kept
    assert "(the socket refused this user: " in refused.stderr
    assert "no warpcore server answered there" not in refused.stderr

    # Any other failure to connect keeps its hint.
    missing = await run(WARPCORE, "--target", f"unix://{refusing_socket.with_name('none.sock')}", "models")
    assert missing.code == 1
    assert "No such file or directory" in missing.stderr
    assert "no warpcore server answered there: start warpcore-server" in missing.stderr
    assert "refused this user" not in missing.stderr
