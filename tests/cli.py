"""Helpers for tests of the warpcore command: the real executable, the environment it runs in, a run's exit code and
output, a process started and finished, a port nothing listens on, and a usage error's line."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WARPCORE = str(Path(sys.executable).with_name("warpcore"))
ENV = {
    name: value
    for name, value in os.environ.items()
    if not name.startswith(("WARPCORE_", "GRPC_VERBOSITY", "GRPC_TRACE"))
}
"""The environment the command runs in: without the caller's warpcore settings, nor gRPC log settings, which would
add gRPC's own lines to its stderr."""


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def start(
    target: str, *args: str, stdin: int = PIPE, stdout: int = PIPE, env: Mapping[str, str] = ENV
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        WARPCORE, "--target", target, *args, stdin=stdin, stdout=stdout, stderr=PIPE, env=env
    )


async def finish(process: asyncio.subprocess.Process, stdin: bytes | None = None) -> tuple[bytes, bytes]:
    """Its output once it ends, within a minute; killed if it does not."""
    try:
        return await asyncio.wait_for(process.communicate(stdin), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def warpcore(target: str, *args: str, stdin: str = "", env: Mapping[str, str] = ENV) -> Run:
    """Run the command to its end, feeding it `stdin`; the server keeps serving meanwhile."""
    process = await start(target, *args, env=env)
    stdout, stderr = await finish(process, stdin.encode())
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


def closed_port_target() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def usage_error(run: Run) -> str:
    """The error line of an argparse-style usage error (exit 2, usage then one line, no traceback)."""
    assert run.code == 2, run
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("usage: warpcore")
    return run.stderr.splitlines()[-1]
