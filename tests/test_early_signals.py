"""A stop signal while `warpcore-server` still imports its modules, before it takes the signals over: it ends the
process as the signal does, with nothing printed. A tester's finding: SIGINT (Ctrl-C) printed a KeyboardInterrupt
traceback of 19 to 29 lines, where SIGTERM ended it cleanly (status 143)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_while_the_server_imports_ends_it_quietly(models_path: Path, stop: signal.Signals) -> None:
    # -X importtime writes a line as each import ends: grpc's says the server's own modules are being imported.
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-X", "importtime", "-m", "warpcore.server", "--port", "0", "--no-default-model"),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while (line := await process.stderr.readline()).rpartition(b"|")[2].strip() != b"grpc":
            assert line, "the server exited before importing grpc"
        process.send_signal(stop)
        said = [line for line in (await process.stderr.read()).decode().splitlines() if not line.startswith("import ")]
        assert (await process.wait(), said) == (-stop, [])
