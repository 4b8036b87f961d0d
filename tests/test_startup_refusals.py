"""Settings that cannot serve stop `warpcore-server` at start with one line naming the setting (a tester's
findings: a traceback, a line naming neither the file nor the setting, a key quoted in a text-mode line)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import TINY_MODEL
from tests.server_process import one_line_failure, start
from tests.test_upstream_redirects import serving_app
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID


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
    # No model's id or name may be key-shaped (they are refused as the logs would redact them): a file's may.
    config = tmp_path / "sk-proj-modelkey1234abcdefghijklmnop.toml"
    config.write_text("[[models]\n")
    text = await one_line_failure(await start(models_path, "--config", str(config)))
    logged = await one_line_failure(await start(models_path, "--config", str(config), "--log-format", "json"))
    assert len(text) == 1
    assert text == [json.loads(line)["message"] for line in logged]
    assert text[0].startswith(f"warpcore-server: {tmp_path}/[redacted].toml is not valid TOML")
    assert "modelkey" not in text[0]


TIMEOUT_RANGE = "timeout must be positive and at most 86400 seconds"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("OPENAI_TIMEOUT", "-5", TIMEOUT_RANGE),
        ("OPENAI_TIMEOUT", "0", TIMEOUT_RANGE),  # was the default, 600 s, in silence
        ("ANTHROPIC_TIMEOUT", "nan", TIMEOUT_RANGE),
        ("ANTHROPIC_TIMEOUT", "1e12", TIMEOUT_RANGE),
        (
            "OPENAI_API_BASE",
            "http://u:sk-live-CREDSECRET999@127.0.0.1:9/v1",
            "base_url must hold no credentials (user:password@); give the key in api_key",
        ),
        ("ANTHROPIC_API_BASE", "ftp://x", "base_url must be an http:// or https:// URL"),
        ("OPENAI_API_BASE", "http://127.0.0.1:9/v1?key=sk-live-CREDSECRET999", "base_url must hold no query"),
        ("ANTHROPIC_API_BASE", "http://127.0.0.1:9/v1#CREDSECRET999", "base_url must hold no query"),
        ("ANTHROPIC_API_VERSION", "2023-06-01\r\nX-Injected: 1", "api_version must be non-empty printable ASCII"),
        ("LLAMA_GPU_LAYERS", "-7", "gpu_layers must be between -1 (all) and 2147483647"),
        ("LLAMA_GPU_LAYERS", "99999999999999999999", "gpu_layers must be between -1 (all) and 2147483647"),
        ("LLAMA_CHAT_FORMAT", "bogus", "chat_format must be one of alpaca, chatml, gemma"),
    ],
)
async def test_a_bad_backend_variable_stops_the_start_naming_it_not_its_value(
    models_path: Path, variable: str, value: str, said: str
) -> None:
    """Checked by the rules of the request field each stands in for, at start: a load that read it came later, or
    never, and a timeout of 0 was the default's."""
    lines = await one_line_failure(await start(models_path, **{variable: value}))
    assert len(lines) == 1
    assert lines[0].startswith(f"warpcore-server: environment variable {variable}: {said}")
    assert "CREDSECRET" not in lines[0]  # a value is never quoted: it may hold a key


async def test_a_hub_mirror_that_is_no_url_stops_a_start_that_pulls(models_path: Path) -> None:
    lines = await one_line_failure(await start(models_path, "--allow-pull", HF_ENDPOINT="not a url"))
    assert lines == ["warpcore-server: environment variable HF_ENDPOINT must be an http:// or https:// URL"]


async def test_a_hub_mirror_with_credentials_stops_a_start_that_pulls(models_path: Path) -> None:
    """As a provider's base URL does: huggingface_hub sent them as Basic auth, whose base64 a mirror's request id
    quoted (an outside tester's finding)."""
    endpoint = "http://u:CREDSECRET999@127.0.0.1:9"
    lines = await one_line_failure(await start(models_path, "--allow-pull", HF_ENDPOINT=endpoint))
    assert lines == [
        "warpcore-server: environment variable HF_ENDPOINT must hold no credentials (user:password@); give the"
        " token in HF_TOKEN"
    ]


@pytest.mark.parametrize("model_id", [EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID])
@pytest.mark.parametrize("lazy", ["true", "false"])
async def test_an_id_of_the_embedded_model_is_refused_in_the_config(
    models_path: Path, tmp_path: Path, model_id: str, lazy: str
) -> None:
    """A tester's finding: a lazy entry under gemma-3-270m-embed was dropped in silence, though logged as declared
    (one loaded at start was refused, once both embedded models had loaded)."""
    config = tmp_path / "clash.toml"
    config.write_text(f'[[models]]\nid = "{model_id}"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nlazy = {lazy}\n')
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--port", "0", "--config", str(config)),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    said = "is the embedded default model's; choose another id, or start with --no-default-model"
    assert await one_line_failure(process) == [f"warpcore-server: {config}: model id {model_id!r} {said}"]


# What `python -m http.server` answers a path it has no file for.
HTML_404 = (
    """<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: 404</p>
        <p>Message: File not found.</p>
        <p>Error code explanation: 404 - Nothing matches the given URI.</p>
    </body>
</html>
"""
    + "<!-- padding -->\n" * 200
)


async def test_an_upstreams_error_page_is_quoted_in_one_short_line(models_path: Path, tmp_path: Path) -> None:
    """A tester's finding: a base_url at a web server that is no API printed its whole HTML page, line by line."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(status=404, text=HTML_404, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", page)
    async with serving_app(app) as origin:
        config = tmp_path / "page.toml"
        config.write_text(
            '[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "gpt-4o"\n[models.api]\n'
            f'api_key_env = "MYKEY"\nbase_url = "{origin}/v1"\n'
        )
        lines = await one_line_failure(await start(models_path, "--config", str(config), MYKEY="sk-test-0123456789"))
    assert len(lines) == 1
    said = "warpcore-server: cannot load startup model 'gpt' (gpt-4o): openai upstream error (HTTP 404):"
    assert lines[0].startswith(f'{said} <!DOCTYPE HTML> <html lang="en"> <head> <meta charset="utf-8">')
    assert re.search(r"\.\.\. \(\d+ characters\); the upstream has no model list under its base URL", lines[0])
    assert len(lines[0]) < 600
