"""The line a refused start leaves follows the log format asked for, whichever setting is wrong (an outside tester's
finding: with JSON logs, a bad WARPCORE_GRACE, port, listen address, keep-alive, memory limit or token file printed a
plain line, where a bad config or a taken port gave a JSON one). A crash-looping Pod's one line is read by a collector
of JSON lines as the others are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.server_process import refusal, start


def critical(line: str) -> str:
    """The message of a JSON line, which is the server's critical one."""
    logged = json.loads(line)
    assert (logged["level"], logged["logger"]) == ("critical", "warpcore.server")
    return str(logged["message"])


JSON_FLAG = ("--log-format", "json")
JSON_VARIABLE = {"WARPCORE_LOG_FORMAT": "json"}


@pytest.mark.parametrize(
    ("arguments", "variables", "said"),
    [
        ((), {**JSON_VARIABLE, "WARPCORE_GRACE": "abc"}, "WARPCORE_GRACE must be a number: abc"),
        (JSON_FLAG, {"WARPCORE_HTTP_PORT": "abc"}, "WARPCORE_HTTP_PORT must be an integer: abc"),
        # A flag: --port, which the server process is started with, beats WARPCORE_LISTEN.
        ((*JSON_FLAG, "--listen", "127.0.0.1:1x"), {}, "--listen 127.0.0.1:1x: the port must be an integer"),
        (
            (),
            {**JSON_VARIABLE, "WARPCORE_STALLED_READER_TIMEOUT": "-5"},
            "WARPCORE_STALLED_READER_TIMEOUT is out of range (at least 0): -5.0",
        ),
        (
            ("--log-format=json",),
            {"WARPCORE_MAX_LOADED_MEMORY": "lots"},
            "WARPCORE_MAX_LOADED_MEMORY must be a size such as 8GiB or 512M: lots",
        ),
        (
            (),
            {**JSON_VARIABLE, "WARPCORE_TOKEN_FILE": "/nonexistent/token"},
            "cannot read the token file /nonexistent/token: No such file or directory",
        ),
        ((*JSON_FLAG, "--port", "70000"), {}, "--port is out of range (0 to 65535): 70000"),
        (("--log-format", "text", *JSON_FLAG), {"WARPCORE_KEEP_ALIVE": "banana"}, "WARPCORE_KEEP_ALIVE must be"),
    ],
)
async def test_a_refused_setting_is_one_json_line_with_json_logs(
    models_path: Path, arguments: tuple[str, ...], variables: dict[str, str], said: str
) -> None:
    """JSON asked for by the variable or the flag (the last one given, as argparse reads it)."""
    status, lines = await refusal(await start(models_path, *arguments, **variables))
    assert status == 1
    assert len(lines) == 1
    assert critical(lines[0]).startswith(f"warpcore-server: {said}")


async def test_a_refused_setting_is_the_same_plain_line_in_text_logs(models_path: Path) -> None:
    status, lines = await refusal(await start(models_path, WARPCORE_GRACE="abc"))
    assert (status, lines) == (1, ["warpcore-server: WARPCORE_GRACE must be a number: abc"])
    # The flag beats the variable, here as everywhere.
    flagged = await start(models_path, "--log-format", "text", WARPCORE_GRACE="abc", WARPCORE_LOG_FORMAT="json")
    assert await refusal(flagged) == (1, lines)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("--port", "abc"), "argument --port: invalid int value: 'abc'"),
        (("--grace=1", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
async def test_a_command_line_argparse_cannot_read_is_one_json_line_with_status_2(
    models_path: Path, arguments: tuple[str, ...], said: str
) -> None:
    status, lines = await refusal(await start(models_path, "--log-format=json", *arguments))
    assert status == 2
    assert len(lines) == 1
    assert critical(lines[0]) == f"warpcore-server: error: {said}"
    # In text, as for any command: the usage, then the line.
    status, lines = await refusal(await start(models_path, *arguments))
    assert status == 2
    assert lines[0].startswith("usage: warpcore-server [-h]")
    assert lines[-1] == f"warpcore-server: error: {said}"


async def test_a_log_format_that_is_none_says_so_in_the_other_setting_s_format_or_in_text(models_path: Path) -> None:
    """The setting that would choose the format is the one refused: a wrong flag's line follows the variable when
    that names a format (a manifest's JSON logs), and a wrong variable's is text, the default."""
    status, lines = await refusal(await start(models_path, "--log-format", "yaml", WARPCORE_LOG_FORMAT="json"))
    assert status == 2
    assert len(lines) == 1
    assert critical(lines[0]).startswith("warpcore-server: error: argument --log-format: invalid choice: 'yaml'")
    status, lines = await refusal(await start(models_path, WARPCORE_LOG_FORMAT="JSON"))
    assert (status, lines) == (1, ["warpcore-server: WARPCORE_LOG_FORMAT must be one of text, json: JSON"])
