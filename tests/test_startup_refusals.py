"""Settings that cannot serve stop `warpcore-server` at start with one line naming the setting (a tester's
findings: a traceback, a line naming neither the file nor the setting, a key quoted in a text-mode line)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.test_server_process import one_line_failure, start


async def test_a_config_file_that_is_not_utf8_is_named_in_one_line(models_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[[models]]\nid = "t\xe9"\nbackend = "llama_cpp"\nmodel = "tiny.gguf"\n')
    lines = await one_line_failure(await start(models_path, "--config", str(config)))
    assert lines == [f"warpcore-server: {config} is not UTF-8 text (byte 18 is not), as a TOML file must be"]


async def test_a_token_file_that_is_not_text_is_named_in_one_line(models_path: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfesecret")
    lines = await one_line_failure(await start(models_path, "--token-file", str(token)))
    said = "is not text (not UTF-8); a token is printable ASCII without spaces"
    assert lines == [f"warpcore-server: the token file {token} {said}"]


@pytest.mark.parametrize(("folder", "cause"), [("", "a file is there, not a folder"), ("inside", "Not a directory")])
async def test_a_models_path_that_is_no_folder_is_named(
    models_path: Path, tmp_path: Path, folder: str, cause: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    given = afile / folder if folder else afile
    lines = await one_line_failure(await start(models_path, "--models-path", str(given)))
    assert lines == [f"warpcore-server: cannot use {given} as --models-path (MODELS_PATH): {cause}"]


async def test_the_fatal_line_is_redacted_in_text_logs_as_in_json_ones(models_path: Path, tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the startup model's load fails
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = tmp_path / "keyed.toml"
    config.write_text(
        '[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "sk-proj-MODELKEY12345678901234"\n[models.api]\n'
        f'api_key_env = "MYKEY"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
    )
    key = {"MYKEY": "sk-test-SECRETSECRET1234"}
    text = await one_line_failure(await start(models_path, "--config", str(config), **key))
    logged = await one_line_failure(await start(models_path, "--config", str(config), "--log-format", "json", **key))
    assert len(text) == 1
    assert text == [json.loads(line)["message"] for line in logged]
    assert text[0].startswith("warpcore-server: cannot load startup model 'gpt' (")
    assert "MODELKEY" not in text[0]
