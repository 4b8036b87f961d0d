"""The warpcore command's handling of what it is given and of what goes wrong: half a client certificate pair, the
options of `tokens`, gRPC's own log lines, a deadline passing mid-stream; the real executable against the real
server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.certificates import make_certificates
from tests.cli import ENV, closed_port_target, usage_error, warpcore
from tests.conftest import TINY_MODEL, load_tiny
from warpcore.client import AsyncClient
from warpcore.server.rpc.server import WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(120)

CORE_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ", re.MULTILINE)
"""A line of gRPC's C core, e.g. "I0000 00:00:1700000000.123456   42 ssl_transport_security.cc:2563] Handshake..."."""


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("given", ["--client-certificate", "--client-key"])
async def test_half_a_client_certificate_pair_is_a_usage_error(given: str, tmp_path: Path) -> None:
    pems = make_certificates()
    (tmp_path / "ca.pem").write_bytes(pems.ca)
    (tmp_path / "half.pem").write_bytes(pems.client_certificate if given == "--client-certificate" else pems.client_key)
    # gRPC used to abort the process (Check failed: private_key != nullptr), with a core dump and no usage line.
    args = ["--root-certificates", str(tmp_path / "ca.pem"), given, str(tmp_path / "half.pem"), "health"]
    run = await warpcore(closed_port_target(), *args)
    missing = "--client-key" if given == "--client-certificate" else "--client-certificate"
    assert usage_error(run) == (
        f"warpcore: error: argument {given} needs {missing} too: mutual TLS takes a client certificate and its key"
        " together, or neither"
    )


async def test_tokens_takes_only_the_options_that_change_a_count() -> None:
    run = await warpcore(closed_port_target(), "tokens", "--help")
    assert run.code == 0
    for kept in (
        "--model",
        "--system",
        "--json-schema",
        "--reasoning-effort",
        "--reasoning-budget",
        "--chat",
        "--list",
    ):
        assert kept in run.stdout
    for dropped in ("--max-tokens", "--presence-penalty", "--frequency-penalty", "--show-reasoning", "--verbosity"):
        assert dropped not in run.stdout
    refused = await warpcore(closed_port_target(), "tokens", "--max-tokens", "5", "hi")
    # argparse takes 5 for the prompt; the word after the unknown flag, which may be its value, is not shown
    assert (
        usage_error(refused)
        == "warpcore: error: unrecognized arguments: --max-tokens (a word not shown: it may be a secret)"
    )


async def test_a_deadline_passing_mid_stream_ends_the_line_and_says_so(stub: Stub, target: str) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    args = ["--timeout", "2", "generate", "--model", "long", "--max-tokens", "32768", "the"]
    run = await warpcore(target, *args)
    assert run.stderr == "warpcore: DEADLINE_EXCEEDED: timed out after 2 s (--timeout)\n"
    assert run.code == 1
    assert run.stdout.strip()  # text came before the deadline
    assert run.stdout.endswith("\n")
    assert not run.stdout.endswith("\n\n")


async def test_failed_connections_print_the_commands_error_alone_unless_grpc_logs_are_asked_for(
    target: str, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_bytes(make_certificates().ca)
    (tmp_path / "none.pem").write_bytes(b"no certificate in here\n")
    to_tls = ["--root-certificates", str(tmp_path / "ca.pem"), "health"]  # the server speaks plaintext
    failures = {
        "refused": [closed_port_target(), "health"],
        "TLS to plaintext": [target, *to_tls],  # gRPC logs the failed handshake (INFO)
    }
    for failure, (to, *args) in failures.items():
        run = await warpcore(to, *args)
        assert (run.code, run.stdout) == (1, ""), failure
        assert re.fullmatch(r"warpcore: UNAVAILABLE: [^\n]+\n", run.stderr), (failure, run.stderr)
    # A file with no certificate in it, which gRPC tells only in its own lines, is the command's usage error.
    none = str(tmp_path / "none.pem")
    run = await warpcore(target, "--root-certificates", none, "health")
    says = f"{none!r} holds no certificate (PEM: -----BEGIN CERTIFICATE-----)"
    assert usage_error(run) == f"warpcore: error: argument --root-certificates: {says}"

    # Whoever asks for gRPC's lines gets them: by GRPC_VERBOSITY, or by GRPC_TRACE for traces.
    for asked, expected in (
        ({"GRPC_VERBOSITY": "info"}, "Handshake failed"),
        ({"GRPC_TRACE": "handshaker"}, "handshake"),
    ):
        run = await warpcore(target, *to_tls, env={**ENV, **asked})
        assert CORE_LOG_LINE.search(run.stderr), run.stderr
        assert expected in run.stderr
        assert run.stderr.splitlines()[-1].startswith("warpcore: UNAVAILABLE: ")


async def test_load_takes_embedding_and_pooling_as_the_sdk_does(target: str) -> None:
    """`warpcore load` could not load a model to embed at all."""
    loaded = await warpcore(target, "load", TINY_MODEL, "--id", "cli", "--embedding", "--pooling", "last")
    assert loaded.code == 0, loaded.stderr
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="last", embedding=True, pooling="last")
        await client.load_model(TINY_MODEL, model_id="mean", embedding=True, pooling="mean")
        (cli,) = (await client.embed("cli", "the world")).embeddings
        (last,) = (await client.embed("last", "the world")).embeddings
        (mean,) = (await client.embed("mean", "the world")).embeddings
    assert cli == last
    assert cli != mean
    refused = await warpcore(target, "load", TINY_MODEL, "--embedding", "--pooling", "max")
    assert usage_error(refused).startswith("warpcore load: error: argument --pooling: invalid choice: 'max'")


async def test_a_byte_order_mark_starting_stdin_or_a_file_is_no_part_of_the_text(
    tiny: str, target: str, tmp_path: Path
) -> None:
    """An outside tester's finding: text saved by a Windows editor starts with U+FEFF, which the command sent as the
    prompt's first tokens. One leading mark of what it reads is dropped; an argument is the caller's text as given."""
    plain = await warpcore(target, "tokens", "--model", tiny, "--list", "hello")
    piped = await warpcore(target, "tokens", "--model", tiny, "--list", stdin="\ufeffhello")
    assert plain.code == piped.code == 0, piped.stderr
    assert piped.stdout == plain.stdout
    argument = await warpcore(target, "tokens", "--model", tiny, "--list", "\ufeffhello")
    assert argument.stdout != plain.stdout
    schema = '{"type": "object", "properties": {"a": {"type": "string"}}}'
    (tmp_path / "plain.json").write_text(schema, encoding="utf-8")
    (tmp_path / "marked.json").write_text(schema, encoding="utf-8-sig")
    counts = [
        await warpcore(target, "tokens", "--model", tiny, "--json-schema", str(tmp_path / name), "hi")
        for name in ("plain.json", "marked.json")
    ]
    assert counts[0].code == 0, counts[0].stderr
    assert counts[1] == counts[0]
