"""The Python SDK's checks of what it is given, sync and asyncio: a mistake fails where it is made, as a TypeError or
ValueError that says what to give instead, rather than in protobuf, in gRPC, or by aborting the process: at a client's
construction (certificates, keys and client options)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.certificates import make_certificates
from tests.sdk_inputs_support import CLIENTS, UNREACHABLE
from warpcore.client import Client, OptionError


@CLIENTS
@pytest.mark.parametrize(
    ("given", "missing"), [("client_certificate", "client_key"), ("client_key", "client_certificate")]
)
def test_half_a_client_certificate_pair_is_refused_at_construction(
    make: Callable[..., object], given: str, missing: str
) -> None:
    pems = make_certificates()
    half = {"client_certificate": pems.client_certificate, "client_key": pems.client_key}[given]
    # gRPC used to abort the whole process at the first call (Check failed: private_key != nullptr).
    message = f"{given} needs {missing} too: mutual TLS takes a client certificate and its key together, or neither"
    with pytest.raises(OptionError, match=f"^{message}$"):
        make(UNREACHABLE, root_certificates=pems.ca, **{given: half})


NOT_A_CERTIFICATE = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@CLIENTS
@pytest.mark.parametrize(
    ("option", "pem", "says"),
    [
        ("root_certificates", b"no certificate in here\n", "holds no certificate"),
        ("root_certificates", NOT_A_CERTIFICATE, "holds a certificate that cannot be read"),
        ("client_certificate", "key", "holds no certificate"),
        ("client_key", "certificate", "holds no PEM private key"),
    ],
)
def test_pem_data_that_is_not_what_the_option_takes_is_refused_at_construction(
    make: Callable[..., object], option: str, pem: bytes | str, says: str, tmp_path: Path
) -> None:
    """gRPC would fail every call's handshake, saying only "Failed to create security handshaker"."""
    pems = make_certificates()
    given = pem if isinstance(pem, bytes) else {"key": pems.client_key, "certificate": pems.client_certificate}[pem]
    options = {"root_certificates": pems.ca, "client_certificate": pems.client_certificate}
    options["client_key"] = pems.client_key
    (tmp_path / "given.pem").write_bytes(given)
    for value, source in ((given, "the PEM data given"), (tmp_path / "given.pem", repr(str(tmp_path / "given.pem")))):
        with pytest.raises(OptionError, match=f"^{option}: {re.escape(source)} {says}"):
            make(UNREACHABLE, **{**options, option: value})


@CLIENTS
@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("server", "client_key: is not the private key of client_certificate (another pair's)"),
        (b"-----BEGIN PRIVATE KEY-----\nZm9v\n-----END PRIVATE KEY-----\n", "client_key: holds a private key that"),
    ],
)
def test_a_client_key_that_is_not_the_certificates_is_refused_at_construction(
    make: Callable[..., object], key: bytes | str, says: str
) -> None:
    pems = make_certificates()
    given = pems.server_key if key == "server" else key
    with pytest.raises(OptionError, match=f"^{re.escape(says)}"):
        make(UNREACHABLE, client_certificate=pems.client_certificate, client_key=given)
    make(UNREACHABLE, client_certificate=pems.client_certificate, client_key=pems.client_key)  # its own: taken


@CLIENTS
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timout": 0.2}, TypeError, "unexpected option 'timout'; did you mean 'timeout'?"),
        ({"tokn": "x"}, TypeError, "unexpected option 'tokn'; did you mean 'token'?"),
        ({"max_retries": -5}, OptionError, "max_retries: must be from 0 to 4 (a count), not -5"),
        # gRPC makes 5 attempts at most: a 6th asked for was silently not made.
        ({"max_retries": 5}, OptionError, "max_retries: must be from 0 to 4 (a count), not 5"),
        ({"max_retries": 1.5}, TypeError, "max_retries is an int, not float"),
        ({"tls": "yes"}, TypeError, "tls is a bool, not str"),
        ({"token": b"x"}, TypeError, "token is a str, not bytes"),
        # gRPC unpacked these only at the first call, as "need more than 1 value to unpack" or "Value after * must be
        # an iterable", and an AsyncClient took them all.
        ({"channel_options": "bad"}, TypeError, "channel_options is a sequence of (name, value) pairs, not str"),
        (
            {"channel_options": {"grpc.x": 1}},
            TypeError,
            "channel_options is a sequence of (name, value) pairs, not dict",
        ),
        ({"channel_options": 5}, TypeError, "channel_options is a sequence of (name, value) pairs, not int"),
        ({"channel_options": [("a", 1), "ab"]}, TypeError, "channel_options[1] is a (name, value) pair, not str"),
        ({"channel_options": [("a",)]}, OptionError, "channel_options: entry 0, ('a',), is not a (name, value) pair"),
        (
            {"channel_options": [("a", 1), ("b", 2, 3)]},
            OptionError,
            "channel_options: entry 1, ('b', 2, 3), is not a (name, value) pair",
        ),
        ({"channel_options": [(1, 1)]}, TypeError, "channel_options[0]'s name is a str, not int"),
        # gRPC would take a float for a pointer to native memory.
        ({"channel_options": [("a", 1.5)]}, TypeError, "channel_options[0]'s value is an int or a str, not float"),
    ],
)
def test_client_options_unknown_or_of_no_use_are_refused_at_construction(
    make: Callable[..., Any], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """They were taken in silence: timout=0.2 left every call without a deadline."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(UNREACHABLE, **options)
    make(
        UNREACHABLE,
        max_retries=0,
        tls=False,
        token="t",
        channel_options=[("grpc.primary_user_agent", "warpcore-test"), ["grpc.keepalive_time_ms", 60_000]],
    )


def test_an_option_error_is_a_value_error_naming_the_option() -> None:
    """Public, for a caller to catch the client's refusals alone; still a ValueError, as code catching that expects."""
    with pytest.raises(OptionError) as refused:
        Client(UNREACHABLE, max_retries=5)
    assert isinstance(refused.value, ValueError)
    assert (refused.value.option, refused.value.problem) == ("max_retries", "must be from 0 to 4 (a count), not 5")
