"""Secrets and security settings as the operator gives them (an on-call operator's findings): an API key read from
the environment by one rule whichever way it is named, a security setting set but empty refused rather than taken as
unset, a passphrase-protected key refused rather than prompted for, and a read-only MODELS_PATH named."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.api_backends_support import Code, details
from tests.certificates import encrypted, make_certificates
from tests.conftest import collect
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import backend_of, key_of, prompt
from tests.sdk_inputs_support import CLIENTS, UNREACHABLE
from tests.test_settings_secrets import tls_files
from warpcore.client import OptionError
from warpcore.server.adapters.factory import check_environment
from warpcore.server.embedded import EMBEDDED_FOLDER, install_embedded_model
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.setting_values import SettingsError, UsageError
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

KEY = "sk-test-Zr7Lx2Vb9Nh4Kc6Pj1Df"


def config_naming(tmp_path: Path, variable: str) -> Path:
    config = tmp_path / "models.toml"
    config.write_text(
        '[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "gpt-x"\nlazy = true\n'
        f'[models.api]\napi_key_env = "{variable}"\n'
    )
    return config


def test_a_key_named_by_api_key_env_loses_the_whitespace_around_it(tmp_path: Path) -> None:
    """A tester's finding: `$(cat key-file)`'s newline was refused as `api_key must be non-empty printable ASCII`
    here, and taken off when the same variable was the default OPENAI_API_KEY."""
    (spec,) = read_preload(config_naming(tmp_path, "OPENAI_API_KEY"), {"OPENAI_API_KEY": f" {KEY}\n"})
    assert spec.settings is not None
    assert spec.settings.api_key == KEY  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["", " ", "\n"])
def test_a_key_variable_named_by_api_key_env_set_but_blank_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    """A tester's finding: ' ' went upstream as `Authorization: Bearer `, and '' was called not set."""
    config = config_naming(tmp_path, "OPENAI_API_KEY")
    said = f"environment variable OPENAI_API_KEY ({config}: models[0].api.api_key_env) is empty"
    with pytest.raises(ConfigError, match=f"^{re.escape(said)}: put the key in it$"):
        read_preload(config, {"OPENAI_API_KEY": value})


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
@pytest.mark.parametrize("value", ["", " ", "\n"])
def test_a_default_key_variable_set_but_blank_is_unset_and_the_start_goes_on(variable: str, value: str) -> None:
    """A compose file passes an unset variable on as empty: a server of local models alone must still start."""
    check_environment({variable: value})


async def test_a_default_key_is_sent_without_the_whitespace_around_it_and_a_blank_one_is_none(
    stub: Stub, upstream: FakeUpstream, server_env: dict[str, str]
) -> None:
    """A tester's finding: a blank OPENAI_API_KEY went upstream as `Authorization: Bearer `."""
    prefix = "OPENAI" if isinstance(upstream, FakeOpenAI) else "ANTHROPIC"
    server_env[f"{prefix}_API_BASE"] = upstream.base_url
    request = pb.LoadModelRequest(backend=backend_of(upstream), model=upstream.models[0], model_id="m")
    server_env[f"{prefix}_API_KEY"] = " "
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert f"API key: set {prefix}_API_KEY" in (raised.value.details() or "")
    assert details(raised.value)["reason"] == "API_KEY_MISSING"
    assert upstream.requests == []
    server_env[f"{prefix}_API_KEY"] = f"{key_of(upstream)}\n"
    await stub.LoadModel(request)
    await collect(stub.Generate(prompt()))
    headers = upstream.requests[-1].headers
    assert headers.get("authorization", headers.get("x-api-key")) in (key_of(upstream), f"Bearer {key_of(upstream)}")


@pytest.mark.parametrize(
    "variable", ["WARPCORE_TOKEN_FILE", "WARPCORE_TLS_CERT", "WARPCORE_TLS_KEY", "WARPCORE_TLS_CLIENT_CA"]
)
@pytest.mark.parametrize("value", ["", " "])
def test_a_security_file_variable_set_but_empty_stops_the_start_naming_it(variable: str, value: str) -> None:
    """A tester's finding: WARPCORE_TOKEN_FILE= served with no token and WARPCORE_TLS_CERT= in plaintext, in
    silence, while WARPCORE_TOKEN= stopped the start."""
    with pytest.raises(SettingsError, match=f"^{variable} is set but empty: "):
        parse_settings([], {variable: value})


@pytest.mark.parametrize("flag", ["--token-file", "--tls-cert", "--tls-key", "--tls-client-ca"])
def test_a_security_file_flag_given_an_empty_name_says_so(flag: str) -> None:
    """A tester's finding: `--token-file ''` said `cannot read the token file .: Is a directory`."""
    with pytest.raises(UsageError, match=f"^argument {flag}: the file's name is empty"):
        parse_settings([flag, ""], {})


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional"])
def test_a_passphrase_protected_tls_key_stops_the_start_naming_it(tmp_path: Path, traditional: bool) -> None:
    """A tester's finding: `cannot serve TLS (Invalid argument)`, and at a terminal OpenSSL asked for the passphrase,
    holding the start."""
    flags = tls_files(tmp_path, key=encrypted(make_certificates().server_key, traditional=traditional))
    said = f"--tls-key {tmp_path / 'key.pem'} is encrypted (protected by a passphrase): give an unencrypted key"
    with pytest.raises(SettingsError, match=f"^{re.escape(said)}"):
        parse_settings(flags, {})


@CLIENTS
@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional"])
def test_a_passphrase_protected_client_key_is_refused_at_construction(
    make: Callable[..., object], traditional: bool
) -> None:
    pems = make_certificates()
    key = encrypted(pems.client_key, traditional=traditional)
    with pytest.raises(
        OptionError, match=r"^client_key: the PEM data given is encrypted \(protected by a passphrase\)"
    ):
        make(UNREACHABLE, root_certificates=pems.ca, client_certificate=pems.client_certificate, client_key=key)


def test_a_models_path_the_embedded_model_cannot_be_written_to_says_how_to_go_on(tmp_path: Path) -> None:
    """A tester's finding: a read-only MODELS_PATH said `[Errno 30] Read-only file system: '.../embedded'`. (The
    tests run as root, whom no mode stops: a file where the folder goes fails the same write.)"""
    (tmp_path / EMBEDDED_FOLDER).write_text("not a folder")
    with pytest.raises(RuntimeError) as raised:
        install_embedded_model(tmp_path)
    said = str(raised.value)
    assert said.startswith(f"cannot write the embedded model into {tmp_path / EMBEDDED_FOLDER} (")
    assert said.endswith(
        "): point MODELS_PATH (--models-path) at a folder the server can write, or start without the embedded model"
        " (--no-default-model, WARPCORE_DEFAULT_MODEL=0)"
    )
