"""The server's settings, from command-line flags with environment-variable fallbacks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from warpcore._keep_alive import SPELLINGS, parse_keep_alive
from warpcore.server.bearer import configured_token
from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS, MAX_MESSAGE_BYTES, MAX_TOKENS_LIMIT
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.limits import (
    API_MAX_MODELS,
    API_MAX_QUEUE,
    API_MAX_STREAMS,
    LOCAL_MAX_QUEUE,
    LOCAL_MAX_STREAMS,
    STALLED_READER_TIMEOUT,
)
from warpcore.server.core.validation import check_keep_alive
from warpcore.server.embedded import EMBEDDED_MODEL_ID
from warpcore.server.env_names import LookedUp
from warpcore.server.rpc.addresses import host_port
from warpcore.server.server_settings import DEFAULT_MODELS_PATH, ServerSettings
from warpcore.server.setting_values import (
    LOG_FORMATS,
    PORT_RANGE,
    SettingsError,
    SettingsParser,
    check_own_ports,
    check_range,
    env_flag,
    host_names,
    listen_addresses,
    security_file,
    size_setting,
)
from warpcore.server.tls import TlsFiles
from warpcore.server.version import VERSION

_RANGES: dict[str, tuple[int, float]] = {
    "port": PORT_RANGE,
    "metrics_port": PORT_RANGE,
    "http_port": PORT_RANGE,
    "grace": (0, math.inf),
    "stalled_reader_timeout": (0, math.inf),
    "max_loaded_models": (0, math.inf),
    "max_api_models": (0, math.inf),
    "max_queue_per_model": (0, math.inf),
    "max_queue_per_api_model": (0, math.inf),
    "max_streams_per_model": (1, math.inf),
    "max_streams_per_api_model": (1, math.inf),
    # Below this no generation request fits; gRPC itself would refuse every call with a transport error.
    "max_message_bytes": (1024, math.inf),
    "max_tokens_limit": (1, 2**32 - 1),  # GenerationOptions.max_tokens is a uint32
}
_NUMBER_WORDS: dict[Any, str] = {int: "an integer", float: "a number"}


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(arg in flags or arg.startswith(tuple(f"{flag}=" for flag in flags)) for arg in argv)


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> ServerSettings:
    """Flags win over their environment variables, which win over the defaults."""
    env = looked_up = LookedUp(env)  # each variable read is noted: a WARPCORE_* one not read is warned of (cli.py)
    parser = SettingsParser(
        prog="warpcore-server",
        description="Serve the warpcore inference API over gRPC (and OpenAI/Anthropic-compatible HTTP).",
        allow_abbrev=False,  # a flag's variable is read unless the flag itself is given (_given): no other spelling
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")

    from_env: dict[str, str] = {}  # dest -> the variable its value came from, when no flag was given

    def option(flag: str, variable: str | None, default: str | None, help_text: str, **kwargs: Any) -> None:
        # Checked here, as argparse checks a flag's, for an error naming the variable in one line (not the flag).
        value = env.get(variable) if variable else None
        if value is not None and not value.strip() and kwargs.get("type") is security_file and not _given(argv, flag):
            raise SettingsError(f"{variable} is set but empty: name the file, or unset the variable")
        if value and variable and not _given(argv, flag):
            from_env[flag.removeprefix("--").replace("-", "_")] = variable
            if value not in kwargs.get("choices", (value,)):
                raise SettingsError(f"{variable} must be one of {', '.join(kwargs['choices'])}: {value}")
            if kwargs.get("type") in _NUMBER_WORDS:
                try:
                    kwargs["type"](value)
                except ValueError:
                    raise SettingsError(f"{variable} must be {_NUMBER_WORDS[kwargs['type']]}: {value}") from None
        shown = "; ".join([f"default: {default}"] * (default is not None) + [f"env {variable}"] * bool(variable))
        parser.add_argument(flag, default=value or default, help=f"{help_text} ({shown})", **kwargs)

    def named(dest: str) -> str:
        """Where a setting's value came from, for its errors: the variable, or the flag."""
        return from_env.get(dest) or f"--{dest.replace('_', '-')}"

    option("--host", "WARPCORE_HOST", "127.0.0.1", "address to bind when --listen is not given")
    option("--port", "WARPCORE_PORT", "50051", "port to bind when --listen is not given", type=int)
    option(
        "--listen",
        "WARPCORE_LISTEN",
        None,
        "comma-separated addresses, e.g. 0.0.0.0:50051,unix:///var/run/warpcore/warpcore.sock",
    )
    option("--models-path", "MODELS_PATH", str(DEFAULT_MODELS_PATH), "folder of GGUF models", type=Path)
    option("--config", "WARPCORE_CONFIG", None, "TOML file of models to load at start", type=Path)
    option("--grace", "WARPCORE_GRACE", "30", "seconds in-flight calls get on shutdown", type=float)
    option(
        "--stalled-reader-timeout",
        "WARPCORE_STALLED_READER_TIMEOUT",
        f"{STALLED_READER_TIMEOUT:g}",
        "seconds a stream's next output waits for a caller that reads nothing; then its generation stops (0: never)",
        type=float,
    )
    option(
        "--token-file",
        "WARPCORE_TOKEN_FILE",
        None,
        "file holding the bearer token clients must send (or the token itself in WARPCORE_TOKEN, not both)",
        type=security_file,
    )
    option("--tls-cert", "WARPCORE_TLS_CERT", None, "PEM certificate chain: serve TLS", type=security_file)
    option("--tls-key", "WARPCORE_TLS_KEY", None, "PEM private key of --tls-cert", type=security_file)
    option(
        "--tls-client-ca", "WARPCORE_TLS_CLIENT_CA", None, "PEM CAs: require client certificates", type=security_file
    )
    option("--metrics-port", "WARPCORE_METRICS_PORT", None, "serve Prometheus metrics over HTTP here", type=int)
    option("--metrics-host", "WARPCORE_METRICS_HOST", None, "address of the metrics endpoint (default: --host)")
    # Off unless asked for, like the metrics port: a second listener is more surface, and its port may be taken.
    option(
        "--http-port",
        "WARPCORE_HTTP_PORT",
        None,
        "serve the OpenAI- and Anthropic-compatible HTTP API here (0 picks a free port)",
        type=int,
    )
    option("--http-host", "WARPCORE_HTTP_HOST", None, "address of the HTTP API (default: --host)")
    # Local (llama.cpp) models compute on this machine and get a few slots; hosted-API models get many (limits.py).
    option(
        "--max-streams-per-model",
        "WARPCORE_MAX_STREAMS_PER_MODEL",
        str(LOCAL_MAX_STREAMS),
        "generations admitted at once per llama.cpp model; those beyond its parallel slots wait for one",
        type=int,
    )
    option(
        "--max-queue-per-model",
        "WARPCORE_MAX_QUEUE_PER_MODEL",
        str(LOCAL_MAX_QUEUE),
        "generations waiting to be admitted per llama.cpp model",
        type=int,
    )
    option(
        "--max-streams-per-api-model",
        "WARPCORE_MAX_STREAMS_PER_API_MODEL",
        str(API_MAX_STREAMS),
        "generations running at once per hosted-API (openai, anthropic) model",
        type=int,
    )
    option(
        "--max-queue-per-api-model",
        "WARPCORE_MAX_QUEUE_PER_API_MODEL",
        str(API_MAX_QUEUE),
        "generations waiting per hosted-API model",
        type=int,
    )
    option(
        "--max-api-models",
        "WARPCORE_MAX_API_MODELS",
        str(API_MAX_MODELS),
        "most hosted-API models loaded at once; a LoadModel past it is refused (0: no limit)",
        type=int,
    )
    option("--max-message-bytes", "WARPCORE_MAX_MESSAGE_BYTES", str(MAX_MESSAGE_BYTES), "largest request", type=int)
    option(
        "--max-tokens-limit",
        "WARPCORE_MAX_TOKENS_LIMIT",
        str(MAX_TOKENS_LIMIT),
        f"largest max_tokens accepted; a request naming none gets {DEFAULT_MAX_TOKENS}, or this when lower",
        type=int,
    )
    option("--log-format", "WARPCORE_LOG_FORMAT", "text", "text or json", choices=LOG_FORMATS)
    # uvloop (libuv) takes less time per I/O event than asyncio's own loop (bench/event_loop.py measures what that
    # buys); asyncio's loop is there for platforms without uvloop.
    option("--event-loop", "WARPCORE_EVENT_LOOP", "uvloop", "uvloop or asyncio", choices=("uvloop", "asyncio"))
    option(
        "--api-overrides",
        "WARPCORE_API_OVERRIDES",
        "auto",
        "may clients send base_url/api_key/organization? auto: only when listening on loopback or a Unix socket",
        choices=("auto", "allow", "deny"),
    )
    option(
        "--allowed-api-hosts", "WARPCORE_ALLOWED_API_HOSTS", None, "comma-separated hosts a client base_url may name"
    )
    option(
        "--keep-alive",
        "WARPCORE_KEEP_ALIVE",
        "forever",
        f"how long an idle llama.cpp model stays loaded unless it says otherwise: {SPELLINGS}",
    )
    option(
        "--max-loaded-models",
        "WARPCORE_MAX_LOADED_MODELS",
        "0",
        "most llama.cpp models loaded at once; the least recently used idle one makes room (0: no limit)",
        type=int,
    )
    option(
        "--max-loaded-memory",
        "WARPCORE_MAX_LOADED_MEMORY",
        None,
        "most estimated memory of the llama.cpp models loaded at once, e.g. 8GiB (unset: no limit)",
    )
    parser.add_argument(
        "--allow-pull",
        action="store_true",
        default=env_flag(env, "WARPCORE_ALLOW_PULL", default=False),
        help="let clients pull hf: models from the Hugging Face Hub into --models-path (env WARPCORE_ALLOW_PULL=1)",
    )
    parser.add_argument(
        "--no-default-model",
        dest="default_model",
        action="store_false",
        default=env_flag(env, "WARPCORE_DEFAULT_MODEL", default=True),
        help=f"do not load the embedded {EMBEDDED_MODEL_ID} model (env WARPCORE_DEFAULT_MODEL=0)",
    )
    args = parser.parse_args(argv)
    if _given(argv, "--host", "--port") and not _given(argv, "--listen"):
        args.listen = None  # a flag beats its environment: WARPCORE_LISTEN (set by every manifest) yields to them
    listen = listen_addresses(args.listen, named("listen")) if args.listen is not None else ()
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SettingsError("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise SettingsError("--tls-client-ca needs --tls-cert and --tls-key")
    for host, port in (("http_host", "http_port"), ("metrics_host", "metrics_port")):
        if getattr(args, host) is not None and getattr(args, port) is None:  # else unused, in silence
            raise SettingsError(f"{named(host)} needs {named(port)}: without a port, nothing listens there")
    try:
        token = configured_token(env.get("WARPCORE_TOKEN"), args.token_file)
        if args.tls_cert is not None:  # read now: gRPC would only say that it cannot bind
            TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca).ssl_context()
    except ValueError as error:
        raise SettingsError(str(error)) from None
    keep_alive = parse_keep_alive(args.keep_alive)
    if keep_alive is None:
        raise SettingsError(f"{named('keep_alive')} must be {SPELLINGS}: {args.keep_alive}")
    try:
        check_keep_alive(keep_alive)
    except InvalidArgumentError as error:
        raise SettingsError(f"{named('keep_alive')}: {error.message}: {args.keep_alive}") from None
    max_loaded_bytes = size_setting(named("max_loaded_memory"), args.max_loaded_memory)
    for name, (low, high) in _RANGES.items():
        value = getattr(args, name)
        if value is not None:
            check_range(named(name), value, low, high)
    addresses = listen or (host_port(args.host, args.port),)
    doors = [(named("listen" if listen else "port"), address) for address in addresses]
    for door in ("http", "metrics"):
        if (port := getattr(args, f"{door}_port")) is not None:
            doors.append((named(f"{door}_port"), host_port(getattr(args, f"{door}_host") or args.host, port)))
    check_own_ports(doors)
    return ServerSettings(
        listen=addresses,
        models_path=args.models_path,
        default_model=args.default_model,
        config=args.config,
        grace=args.grace,
        stalled_reader_timeout=args.stalled_reader_timeout or None,
        token=token,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host or args.host,
        http_port=args.http_port,
        http_host=args.http_host or args.host,
        max_streams_per_model=args.max_streams_per_model,
        max_queue_per_model=args.max_queue_per_model,
        max_streams_per_api_model=args.max_streams_per_api_model,
        max_queue_per_api_model=args.max_queue_per_api_model,
        max_api_models=args.max_api_models or None,
        max_message_bytes=args.max_message_bytes,
        max_tokens_limit=args.max_tokens_limit,
        log_format=args.log_format,
        api_overrides=args.api_overrides,
        allowed_api_hosts=None
        if args.allowed_api_hosts is None
        else host_names(args.allowed_api_hosts, named("allowed_api_hosts")),
        keep_alive=keep_alive,
        max_loaded_models=args.max_loaded_models or None,
        max_loaded_bytes=max_loaded_bytes,
        allow_pull=args.allow_pull,
        event_loop=args.event_loop,
        variables=frozenset(looked_up.names),
    )
