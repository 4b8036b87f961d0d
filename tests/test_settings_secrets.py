"""The token and TLS files as the server reads them at start: a token no client could send, or one set but empty,
and TLS files that cannot serve are refused with a line that names them; the C core's own log lines (a failed TLS
handshake, which any peer can cause) stay out of the server's log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from pathlib import Path

import pytest

from tests.certificates import make_certificates
from warpcore.server.setting_values import SettingsError
from warpcore.server.settings import parse_settings


@pytest.mark.parametrize("value", ["tok123\n", "  tok123  ", "\ttok123"])
def test_whitespace_around_the_token_variable_is_no_part_of_the_token(value: str) -> None:
    """A tester's finding: a token with a secret's last newline, or pasted with a space, locked every client out."""
    assert parse_settings([], {"WARPCORE_TOKEN": value}).token == "tok123"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "WARPCORE_TOKEN is empty: unset it to serve without a token"),
        ("   ", "WARPCORE_TOKEN is empty"),
        ("h\u00e9llo", "WARPCORE_TOKEN holds a token no client can send"),
        ("two words", "WARPCORE_TOKEN holds a token no client can send"),
    ],
)
def test_a_token_variable_set_but_empty_or_unsendable_stops_the_start(value: str, words: str) -> None:
    """A tester's finding: set but empty, it turned authentication off without a word."""
    with pytest.raises(SettingsError, match=words):
        parse_settings([], {"WARPCORE_TOKEN": value})


def test_a_token_file_no_client_could_send_stops_the_start(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("line1\nline2\n")
    with pytest.raises(SettingsError, match=f"the token file {token_file} holds a token no client can send"):
        parse_settings(["--token-file", str(token_file)], {})


@pytest.mark.parametrize("spelling", ["--token-file", "WARPCORE_TOKEN_FILE"])
def test_a_token_in_both_the_variable_and_a_file_stops_the_start(tmp_path: Path, spelling: str) -> None:
    """A tester's finding: the file's token was taken and the variable's ignored, in silence."""
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    flag = spelling.startswith("--")
    arguments, env = ([spelling, str(token_file)], {}) if flag else ([], {spelling: str(token_file)})
    with pytest.raises(SettingsError, match=f"both WARPCORE_TOKEN and the token file {token_file} are set"):
        parse_settings(arguments, {**env, "WARPCORE_TOKEN": "env-token"})


def tls_files(tmp_path: Path, **replaced: bytes) -> list[str]:
    """The flags of a server certificate, its key and a client CA, written to files, some contents replaced."""
    pems = make_certificates()
    contents = {"cert": pems.server_certificate, "key": pems.server_key, "ca": pems.ca, **replaced}
    for name, content in contents.items():
        (tmp_path / f"{name}.pem").write_bytes(content)
    return [
        f"--tls-{flag}={tmp_path / name}.pem" for flag, name in (("cert", "cert"), ("key", "key"), ("client-ca", "ca"))
    ]


@pytest.mark.parametrize(
    ("replaced", "words"),
    [
        ("key", r"--tls-cert \S+ and --tls-key \S+ cannot serve TLS \(KEY_VALUES_MISMATCH\)"),
        ("cert", r"cannot serve TLS .*: give a PEM certificate chain"),
        ("ca", r"--tls-client-ca \S+ is not PEM CA certificates"),
    ],
)
def test_tls_files_that_cannot_serve_stop_the_start_naming_them(tmp_path: Path, replaced: str, words: str) -> None:
    """A tester's finding: gRPC said only that it could not bind the address."""
    other = make_certificates()
    wrong = {"key": other.server_key, "cert": b"not a certificate", "ca": b"not a CA"}[replaced]
    with pytest.raises(SettingsError, match=words):
        parse_settings(tls_files(tmp_path, **{replaced: wrong}), {})


async def test_failed_tls_handshakes_leave_the_json_log_json(tmp_path: Path) -> None:
    """A tester's finding: each failed handshake (a plaintext client, a client without the certificate mTLS asks
    for) wrote a line of gRPC's C core, not JSON, into the server's log: any peer could, without limit."""
    env = {key: value for key, value in os.environ.items() if key not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--port", "0", "--no-default-model", "--log-format", "json"),
        *tls_files(tmp_path),
        env={**env, "MODELS_PATH": str(tmp_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        started = json.loads(await asyncio.wait_for(process.stderr.readline(), 60))
        assert str(started["message"]).endswith("; no token, mTLS, client API settings allowed")
        port = int(str(started["message"]).split("127.0.0.1:")[1].split(",")[0])
        no_client_certificate = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        for context in (None, no_client_certificate) * 3:  # plaintext, then TLS without a client certificate
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
                writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # an HTTP/2 client's first bytes
                await asyncio.wait_for(reader.read(), 30)  # the server ends the connection: its handshake failed
                writer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 60)
        await process.wait()
    lines = rest.decode().splitlines()
    assert lines  # the shutdown's own lines at least
    for line in lines:
        json.loads(line)
