"""Channel settings shared by both clients: target, TLS, token, retries through gRPC's service config."""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import grpc

from warpcore._addresses import MAX_PORT, written_ports
from warpcore._client_env import TARGET_VARIABLE, TOKEN_VARIABLE
from warpcore._private_keys import ENCRYPTED_KEY, NO_PASSPHRASE, is_encrypted
from warpcore.client._checks import OptionError, client_values, known_options, timeout_seconds
from warpcore.client._errors import Deadline

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_MAX_RETRIES = 2
SERVICE = "warpcore.v1.InferenceService"
RETRIED_METHODS = ("LoadModel", "UnloadModel", "ListModels")

Pem = bytes | str | Path
"""PEM data, or the path of a PEM file."""
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


class ClientOptions(TypedDict, total=False):
    """Keyword-only options of Client and AsyncClient. An option not named here is a TypeError (naming the nearest one,
    as a likely misspelling), a value of the wrong type a TypeError, any other value that cannot be used an
    OptionError (a ValueError) naming the option."""

    tls: bool
    """Use TLS (implied by any certificate option); without root_certificates, the system's roots."""
    root_certificates: Pem
    client_certificate: Pem
    """For mutual TLS, with client_key: one without the other is a ValueError."""
    client_key: Pem
    token: str | None
    """Sent as "authorization: Bearer <token>" on every call; None (the default): $WARPCORE_TOKEN's; "": no token,
    whatever the environment holds."""
    timeout: float | None
    """Default deadline of every call, in seconds, greater than 0 and at most 1e8; None (the default): no deadline."""
    max_retries: int
    """Retries of LoadModel, UnloadModel and ListModels on UNAVAILABLE (default 2; 0 to 4, gRPC making at most 5
    attempts). Generate is never retried."""
    channel_options: Sequence[tuple[str, Any]]
    """Extra grpc channel arguments, e.g. ("grpc.enable_http_proxy", 0) (answers of any size are taken already)."""


def closed_error(client: str) -> RuntimeError:
    """What a call on a closed Client or AsyncClient raises (gRPC's own, a ValueError, names neither)."""
    return RuntimeError(f"this {client} is closed")


@dataclass(frozen=True)
class ChannelSettings:
    target: str
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...] = field(repr=False)
    timeout: float | None
    arguments: tuple[tuple[str, Any], ...]

    def deadline(self, timeout: float | None) -> Deadline | None:
        """The deadline of one call: its timeout, checked as the client's own is; None: the client's, if any."""
        seconds = timeout_seconds("timeout", timeout)
        if seconds is not None:
            return Deadline(seconds, "the call's")
        return None if self.timeout is None else Deadline(self.timeout, "the client's")


def _pem(option: str, value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return _checked(option, value, "the PEM data given")
    if isinstance(value, str) and "-----BEGIN" in value:
        # Otherwise the PEM text itself would be reported as a file name that cannot be read.
        raise OptionError(option, "PEM data must be bytes; a str is the path of a PEM file")
    try:
        data = Path(value).read_bytes()
    except OSError as error:
        # A bare FileNotFoundError names the path but not which of the three options gave it.
        raise OptionError(option, f"cannot read {str(value)!r}: {error.strerror or error}") from error
    return _checked(option, data, repr(str(value)))


def _checked(option: str, data: bytes | None, source: str) -> bytes | None:
    """PEM data that holds what the option takes. gRPC only fails the handshake, later, on every call, with
    "Failed to create security handshaker"; why (no certificate in the file, a key that is none) it logs apart, in
    lines the CLI keeps quiet."""
    if data is None:
        return None
    if option == "client_key":
        if not _PRIVATE_KEY.search(data):
            raise OptionError(option, f"{source} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        if is_encrypted(data):
            raise OptionError(option, f"{source} {ENCRYPTED_KEY}")
        return data
    try:  # OpenSSL's own reading of certificates, as gRPC's
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError):
        problem = "a certificate that cannot be read" if b"-----BEGIN CERTIFICATE-----" in data else "no certificate"
        raise OptionError(option, f"{source} holds {problem} (PEM: -----BEGIN CERTIFICATE-----)") from None
    return data


def _check_pair(chain: bytes, key: bytes) -> None:
    """A client key OpenSSL can read, and that goes with the certificate: gRPC would fail every handshake, and say why
    only in its own log lines. Read from memory files (Linux), never written to disk; elsewhere left to gRPC."""
    if not hasattr(os, "memfd_create"):
        return
    with _memory_file(chain) as chain_path, _memory_file(key) as key_path:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(chain_path, key_path, password=NO_PASSPHRASE)
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                raise OptionError(
                    "client_key", "is not the private key of client_certificate (another pair's)"
                ) from None
            raise OptionError("client_key", "holds a private key that cannot be read") from None


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    descriptor = os.memfd_create("warpcore-pem")
    try:
        os.write(descriptor, data)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


def service_config(max_retries: int) -> str:
    """Round-robin over every address the target resolves to; retry the unary calls on UNAVAILABLE."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if max_retries > 0:
        config["methodConfig"] = [
            {
                "name": [{"service": SERVICE, "method": method} for method in RETRIED_METHODS],
                "retryPolicy": {
                    "maxAttempts": max_retries + 1,  # at most 5, gRPC's cap (checked when the client is made)
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


def _target(target: str | None, env: Mapping[str, str]) -> str:
    """`target`, else $WARPCORE_TARGET, else DEFAULT_TARGET; an OptionError for one that gRPC would dial otherwise
    than written: empty (it was taken as not given), or with a port of 0 or past MAX_PORT (wrapped round)."""
    source = ""
    if target is None:
        target, source = env.get(TARGET_VARIABLE) or DEFAULT_TARGET, f" (from ${TARGET_VARIABLE})"
    if not target.strip():
        raise OptionError("target", f"must not be empty: give host:port, such as {DEFAULT_TARGET}")
    for port in written_ports(target):
        if port.isascii() and port.isdigit() and not 0 < int(port) <= MAX_PORT:  # a name (http) is gRPC's to read
            raise OptionError("target", f"port {port} is not one of 1 to {MAX_PORT}{source}")
    return target


def channel_settings(
    target: str | None, options: ClientOptions, env: Mapping[str, str] = os.environ
) -> ChannelSettings:
    # An option misspelled would otherwise be dropped in silence, e.g. timout=: then no deadline at all.
    known_options(options, ClientOptions.__optional_keys__)
    timeout = client_values(options)
    certificates = {
        "root_certificates": options.get("root_certificates"),
        "client_certificate": options.get("client_certificate"),
        "client_key": options.get("client_key"),
    }
    credentials = None
    if options.get("tls") or any(certificates.values()):
        root, chain, key = (_pem(name, certificate) for name, certificate in certificates.items())
        if bool(chain) != bool(key):  # gRPC would abort the whole process, in C++
            given, other = ("client_certificate", "client_key") if chain else ("client_key", "client_certificate")
            raise OptionError(given, "mutual TLS takes a client certificate and its key together, or neither", other)
        if chain and key:
            _check_pair(chain, key)
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    # Whitespace around the variable's value (a secret's last newline) is no part of the token, as the server reads it.
    # An empty token given is none: the one way to call a server without the environment's token.
    token_given = options.get("token")
    token = env.get(TOKEN_VARIABLE, "").strip() if token_given is None else token_given
    if token and not _HEADER_VALUE.fullmatch(token):
        # gRPC would fail every call, INTERNAL "Invalid metadata", and log lines of its own. The token is a secret:
        # the message does not show it.
        source = "" if token_given is not None else f" (from ${TOKEN_VARIABLE})"
        raise OptionError("token", f"must be printable ASCII, as a gRPC header value is{source}")
    return ChannelSettings(
        target=_target(target, env),
        credentials=credentials,
        metadata=(("authorization", f"Bearer {token}"),) if token else (),
        timeout=timeout,
        arguments=(
            # The server bounds its answers by its own max message size (--max-message-bytes), and refuses before
            # any work an answer over it: gRPC's 4 MiB default here would drop one it was allowed to send, done.
            ("grpc.max_receive_message_length", -1),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(options.get("max_retries", DEFAULT_MAX_RETRIES))),
            *options.get("channel_options", ()),
        ),
    )
