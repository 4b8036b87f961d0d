"""Server settings from flags and environment, and the TLS and token options they turn into."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.certificates import make_certificates
from warpcore.client import AsyncClient, AuthenticationError, UnavailableError
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.cli import main, serving_options
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.rpc.server import start_server
from warpcore.server.setting_values import SettingsError, UsageError
from warpcore.server.settings import parse_settings


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"WARPCORE_PORT": "6000", "WARPCORE_GRACE": "5", "WARPCORE_DEFAULT_MODEL": "0"}
    settings = parse_settings(["--grace", "7"], env)
    assert settings.listen == ("127.0.0.1:6000",)
    assert settings.grace == 7
    assert settings.default_model is False
    listen = parse_settings([], {"WARPCORE_LISTEN": "0.0.0.0:1, unix:///tmp/w.sock"}).listen
    assert listen == ("0.0.0.0:1", "unix:///tmp/w.sock")


def test_a_stalled_reader_is_cut_after_a_minute_unless_told_otherwise_and_zero_means_never() -> None:
    assert parse_settings([], {}).stalled_reader_timeout == 60
    assert parse_settings([], {"WARPCORE_STALLED_READER_TIMEOUT": "2.5"}).stalled_reader_timeout == 2.5
    assert parse_settings(["--stalled-reader-timeout", "0"], {}).stalled_reader_timeout is None
    assert serving_options(parse_settings(["--stalled-reader-timeout", "9"], {})).limits.stalled_reader_timeout == 9


def test_the_http_door_is_off_unless_given_a_port_and_binds_the_grpc_host() -> None:
    assert parse_settings([], {}).http_port is None
    settings = parse_settings(["--host", "0.0.0.0"], {"WARPCORE_HTTP_PORT": "8080"})
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)
    settings = parse_settings(["--http-port", "9000", "--http-host", "127.0.0.1"], {"WARPCORE_HTTP_PORT": "8080"})
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 9000)


def test_the_metrics_endpoint_binds_the_grpc_host_unless_told_otherwise() -> None:
    # Model ids and traffic are no business of other hosts: off loopback only where the operator says so.
    assert parse_settings([], {"WARPCORE_METRICS_PORT": "9090"}).metrics_host == "127.0.0.1"
    assert parse_settings(["--host", "0.0.0.0"], {}).metrics_host == "0.0.0.0"
    settings = parse_settings(["--metrics-host", "10.0.0.1", "--metrics-port", "0"], {"WARPCORE_HOST": "0.0.0.0"})
    assert settings.metrics_host == "10.0.0.1"


@pytest.mark.parametrize(("port", "host"), [("--http-port", "--http-host"), ("--metrics-port", "--metrics-host")])
def test_a_listener_host_without_its_port_is_refused_not_ignored(port: str, host: str) -> None:
    with pytest.raises(SettingsError, match=f"^{host} needs {port}: without a port, nothing listens there$"):
        parse_settings([host, "0.0.0.0"], {})
    variable = "WARPCORE_" + host.removeprefix("--").replace("-", "_").upper()
    with pytest.raises(SettingsError, match=f"^{variable} needs {port}"):
        parse_settings([], {variable: "0.0.0.0"})
    assert parse_settings([host, "0.0.0.0", port, "0"], {}) is not None


SHARED = "the server's own listeners cannot share a port: give each its own"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "8080", "--http-port", "8080"], {}, f"--port and --http-port both name port 8080: {SHARED}"),
        (["--metrics-port", "9090"], {"WARPCORE_HTTP_PORT": "9090"}, "WARPCORE_HTTP_PORT and --metrics-port both"),
        (["--listen", "0.0.0.0:7000", "--http-host", "10.0.0.5", "--http-port", "7000"], {}, "--listen and --http"),
        (["--listen", "127.0.0.1:7000,127.0.0.1:7000"], {}, "^--listen names 127.0.0.1:7000 twice$"),
        ([], {"WARPCORE_LISTEN": "unix:///tmp/w.sock,unix:///tmp/w.sock"}, "^WARPCORE_LISTEN names unix:///tmp/w.so"),
    ],
)
def test_two_listeners_of_the_server_on_one_port_are_refused_naming_both(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """A tester's finding: the second bind failed with "Address already in use", as if some other server had it."""
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, env)


def test_listeners_may_share_port_0_or_a_port_on_other_hosts() -> None:
    assert parse_settings(["--port", "0", "--http-port", "0", "--metrics-port", "0"], {}).http_port == 0
    argv = ["--listen", "127.0.0.1:8080,[::1]:8080", "--http-host", "10.0.0.5", "--http-port", "8080"]
    assert parse_settings(argv, {}).http_port == 8080


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for() -> None:
    assert parse_settings([], {}).event_loop == "uvloop"
    assert parse_settings([], {"WARPCORE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    assert parse_settings(["--event-loop", "uvloop"], {"WARPCORE_EVENT_LOOP": "asyncio"}).event_loop == "uvloop"
    with pytest.raises(UsageError, match=r"^argument --event-loop: invalid choice: 'trio'"):
        parse_settings(["--event-loop", "trio"], {})
    with pytest.raises(SettingsError, match="WARPCORE_EVENT_LOOP must be one of uvloop, asyncio: trio"):
        parse_settings([], {"WARPCORE_EVENT_LOOP": "trio"})
    with pytest.raises(SettingsError, match="WARPCORE_LOG_FORMAT must be one of text, json: xml"):
        parse_settings([], {"WARPCORE_LOG_FORMAT": "xml"})


def test_api_models_have_admission_limits_of_their_own() -> None:
    defaults = serving_options(parse_settings([], {})).limits
    assert (defaults.max_streams_per_model, defaults.max_queue_per_model) == (4, 64)
    assert (defaults.max_streams_per_api_model, defaults.max_queue_per_api_model) == (256, 1024)
    env = {"WARPCORE_MAX_STREAMS_PER_API_MODEL": "32", "WARPCORE_MAX_QUEUE_PER_API_MODEL": "8"}
    limits = serving_options(
        parse_settings(["--max-queue-per-api-model", "0", "--max-streams-per-model", "2"], env)
    ).limits
    assert (limits.max_streams_per_model, limits.max_queue_per_model) == (2, 64)
    assert (limits.max_streams_per_api_model, limits.max_queue_per_api_model) == (32, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
        (["--max-streams-per-model", "0"], "--max-streams-per-model is out of range"),
        (["--max-streams-per-api-model", "0"], "--max-streams-per-api-model is out of range"),
        (["--max-queue-per-api-model", "-1"], "--max-queue-per-api-model is out of range"),
        (["--max-tokens-limit", "0"], "--max-tokens-limit is out of range"),
        (["--max-tokens-limit", "99999999999"], r"--max-tokens-limit is out of range \(1 to 4294967295\)"),
        (["--grace", "inf"], r"--grace is out of range \(at least 0\): inf"),
        (["--stalled-reader-timeout", "-1"], r"--stalled-reader-timeout is out of range \(at least 0\): -1"),
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--port", "70000"], r"--port is out of range \(0 to 65535\): 70000"),
        (["--http-port", "-1"], "--http-port is out of range"),
        (["--metrics-port", "65536"], "--metrics-port is out of range"),
        (["--max-message-bytes", "10"], r"--max-message-bytes is out of range \(at least 1024\)"),
        # A tester's findings: gRPC bound 99999 as 34463 (modulo 65536), -1 as 65535, a host alone as port 443, and
        # a list of no address fell back to --host:--port.
        (["--listen", "127.0.0.1:99999"], r"^--listen port is out of range \(0 to 65535\): 99999$"),
        (["--listen", "0.0.0.0:1,127.0.0.1:65537"], r"^--listen port is out of range \(0 to 65535\): 65537$"),
        (["--listen", "[::1]:-1"], r"^--listen \[::1\]:-1: the port must be an integer$"),
        (["--listen", "127.0.0.1"], r"^--listen 127.0.0.1 has no port: give host:port \(an IPv6 host in brackets"),
        (["--listen", "::1"], r"^--listen ::1 has no port"),
        (["--listen", ","], "^--listen holds no address: give host:port or unix:path, comma-separated$"),
        (["--allowed-api-hosts", ","], "^--allowed-api-hosts must list host names or IP addresses"),
        (["--allowed-api-hosts", "http://example.com/"], "^--allowed-api-hosts must list host names or IP addresses"),
        (["--allowed-api-hosts", "example.com:443"], "without scheme, port or path$"),
    ],
)
def test_bad_settings_say_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, {})


@pytest.mark.parametrize("variable", ["WARPCORE_ALLOW_PULL", "WARPCORE_DEFAULT_MODEL"])
def test_a_switch_in_the_environment_must_say_yes_or_no(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable} must be 1 or 0"):
        parse_settings([], {variable: "maybe"})
    assert parse_settings([], {variable: "yes"}) == parse_settings([], {variable: "1"})


def test_listen_addresses_and_api_hosts_are_taken_as_given() -> None:
    assert parse_settings(["--listen", "[::1]:0, unix:///tmp/w.sock,"], {}).listen == ("[::1]:0", "unix:///tmp/w.sock")
    assert parse_settings(["--listen", "unix-abstract:warpcore"], {}).listen == ("unix-abstract:warpcore",)
    hosts = parse_settings([], {"WARPCORE_ALLOWED_API_HOSTS": "Api.OpenAI.com, [::1],10.0.0.5"}).allowed_api_hosts
    assert hosts == frozenset({"api.openai.com", "::1", "10.0.0.5"})  # as urlsplit gives a base URL's host
    with pytest.raises(SettingsError, match=r"^WARPCORE_LISTEN port is out of range"):
        parse_settings([], {"WARPCORE_LISTEN": "127.0.0.1:70000"})


def test_a_flag_is_known_by_its_whole_name_only() -> None:
    # A tester's finding: `--po 0` was taken for --port, yet WARPCORE_PORT, which a flag given beats, was still read.
    with pytest.raises(UsageError, match=r"^unrecognized arguments: --po 0$"):
        parse_settings(["--po", "0"], {})


def test_host_and_port_flags_win_over_the_listen_variable() -> None:
    env = {"WARPCORE_LISTEN": "0.0.0.0:7000"}
    assert parse_settings(["--port", "7001"], env).listen == ("127.0.0.1:7001",)
    assert parse_settings(["--host=0.0.0.0"], env).listen == ("0.0.0.0:50051",)
    assert parse_settings(["--port", "7001", "--listen", "[::]:7002"], env).listen == ("[::]:7002",)
    assert parse_settings([], env).listen == ("0.0.0.0:7000",)


async def test_tls_and_token_settings_serve_mtls_with_a_token(models_path: Path, tmp_path: Path) -> None:
    pems = make_certificates()
    files = {
        "cert.pem": pems.server_certificate,
        "key.pem": pems.server_key,
        "ca.pem": pems.ca,
        "token": b"s3cret\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    argv = ["--tls-cert", "cert.pem", "--tls-key", "key.pem", "--tls-client-ca", "ca.pem", "--token-file", "token"]
    settings = parse_settings([str(tmp_path / arg) if arg.endswith((".pem", "token")) else arg for arg in argv], {})
    registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models_path)}))
    server = await start_server(registry, "127.0.0.1:0", serving_options(settings))
    target = f"127.0.0.1:{server.port}"
    mtls = {"root_certificates": pems.ca, "client_certificate": pems.client_certificate, "client_key": pems.client_key}
    try:
        async with AsyncClient(target, token="s3cret", **mtls) as client:  # type: ignore[arg-type]
            assert await client.list_models() == []
        async with AsyncClient(target, token="wrong", **mtls) as client:  # type: ignore[arg-type]
            with pytest.raises(AuthenticationError):
                await client.list_models()
        async with AsyncClient(target, token="s3cret", max_retries=0) as plaintext:
            with pytest.raises(UnavailableError):
                await plaintext.list_models(timeout=5)
    finally:
        await server.stop(None)
        await registry.close()


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("WARPCORE_GRACE", "abc", "must be a number: abc"),
        ("WARPCORE_PORT", "abc", "must be an integer: abc"),
        ("WARPCORE_METRICS_PORT", "abc", "must be an integer: abc"),
        ("WARPCORE_MAX_QUEUE_PER_MODEL", "1.5", "must be an integer: 1.5"),
        ("WARPCORE_PORT", "70000", "is out of range (0 to 65535): 70000"),
        (
            "WARPCORE_KEEP_ALIVE",
            "soon",
            "must be seconds (90), a number with a unit ms, s, m, h or d (45s, 10m, 1.5h, 2d),"
            " or forever (-1, inf): soon",
        ),
        ("WARPCORE_MAX_LOADED_MEMORY", "lots", "must be a size such as 8GiB or 512M: lots"),
    ],
)
def test_a_bad_value_from_the_environment_is_named_by_its_variable_in_one_line(
    variable: str, value: str, words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse named the flag, under 23 lines of usage, for a value the operator had set as a variable.
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == f"warpcore-server: {variable} {words}\n"  # printed as it is
    # A flag given beats its variable, which is then not read at all.
    assert parse_settings(["--grace", "1"], {"WARPCORE_GRACE": "abc"}).grace == 1


def test_the_help_gives_each_flags_default_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """A newcomer's finding: the port, grace, limits and keep-alive defaults were only in the README."""
    with pytest.raises(SystemExit):
        parse_settings(["--help"], {})
    shown = " ".join(capsys.readouterr().out.split())
    for default in (
        "(default: 50051; env WARPCORE_PORT)",
        "(default: 30; env WARPCORE_GRACE)",
        "(default: forever; env WARPCORE_KEEP_ALIVE)",
        "(default: 4; env WARPCORE_MAX_STREAMS_PER_MODEL)",
        "(env WARPCORE_CONFIG)",
    ):
        assert default in shown
