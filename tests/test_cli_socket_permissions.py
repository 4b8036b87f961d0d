"""The warpcore command refused by a Unix socket's permissions says so (an outside tester's finding: a sidecar's
application outside the socket's group was told that no server answered there, and to start one)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import ENV, WARPCORE, Run, finish

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the capabilities dropped for root are Linux's")

# Root passes any file's mode with CAP_DAC_OVERRIDE (and CAP_DAC_READ_SEARCH for folders): without them in its
# bounding set, what it runs is held to the socket's mode as any other user is. As another UID it could not run
# this interpreter, which may lie in root's own home.
AS_ANY_USER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
        sys.exit(f"cannot drop capability {capability}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
PREFIX = (sys.executable, "-c", AS_ANY_USER) if os.geteuid() == 0 else ()
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
