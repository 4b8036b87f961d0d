"""What the server tells the operator as it starts (an outside tester's findings): its version, where each door
listens, host included, and a warning when a door is open to other machines with no token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server_process import log_lines_until, start
from warpcore.server.cli import main
from warpcore.server.version import VERSION


def test_the_server_tells_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"warpcore-server {VERSION}\n"
    assert VERSION[0].isdigit()


async def serving_log(models_path: Path, *arguments: str) -> list[dict[str, object]]:
    process = await start(models_path, "--log-format", "json", *arguments)
    try:
        return await log_lines_until(process, "serving on")
    finally:
        process.terminate()
        await process.wait()


async def test_a_door_open_to_other_machines_without_a_token_is_warned_of(models_path: Path) -> None:
    started = await serving_log(
        models_path, "--host", "0.0.0.0", "--http-port", "0", "--allow-pull", "--api-overrides", "allow"
    )
    warnings = [str(line["message"]) for line in started if line["level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0].startswith("no token, and gRPC on 0.0.0.0:")
    assert ", HTTP on 0.0.0.0:" in warnings[0]
    assert warnings[0].endswith(
        " listen beyond this machine: whoever reaches them may generate with every model (the hosted ones on the"
        " server's API keys), load and unload models, pull models from the Hub (--allow-pull) and send API settings"
        " of their own (--api-overrides); set WARPCORE_TOKEN or --token-file, or require client certificates"
    )
    line = str(started[-1]["message"])
    assert line.startswith(f"warpcore-server {VERSION} serving on 0.0.0.0:")


async def test_no_warning_on_loopback_or_with_a_token(models_path: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token")
    for arguments in (("--metrics-port", "0"), ("--host", "0.0.0.0", "--token-file", str(token))):
        started = await serving_log(models_path, *arguments)
        assert [line for line in started if line["level"] == "warning"] == []
    assert f"warpcore-server {VERSION} serving on 127.0.0.1:" in str((await serving_log(models_path))[-1])
