"""A stop signal while `warpcore-server` still imports its modules, before its event loop takes the signals over: it
stops the process with status 0, as a stop signal does once it serves, and with nothing printed. Tester's findings:
SIGINT (Ctrl-C) printed a KeyboardInterrupt traceback of 19 to 29 lines, where SIGTERM ended it as the signal does
(status 143), and on a busy machine the imports took seconds, a window a Pod's stop at rollout often fell in."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

COMMAND = "warpcore.server.command"
"""The command's module, whose first line takes the signals: the imports after it are the server's."""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("imported", [COMMAND, "grpc"], ids=["first import", "grpc"])
async def test_a_signal_while_the_server_imports_stops_it_quietly(
    models_path: Path, stop: signal.Signals, imported: str
) -> None:
    # -X importtime writes a line as each import ends: the signal comes once `imported` is, and past the command's
    # own module only once the next import has ended, which its first line starts.
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-X", "importtime", "-m", "warpcore.server", "--port", "0", "--no-default-model"),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while (line := await process.stderr.readline()).rpartition(b"|")[2].strip() != imported.encode():
            assert line, f"the server exited before importing {imported}"
        if imported == COMMAND:
            assert (await process.stderr.readline()).startswith(b"import time:")
        process.send_signal(stop)
        said = [line for line in (await process.stderr.read()).decode().splitlines() if not line.startswith("import ")]
        assert (await process.wait(), said) == (0, [])
