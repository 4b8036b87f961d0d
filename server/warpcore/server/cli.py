"""The warpcore-server command: serve the gRPC API (and the HTTP one when asked), with the embedded default model
and any preloaded ones."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, NoReturn

from warpcore.server.adapters.factory import check_environment, check_unloaded, create_adapter, hub_download
from warpcore.server.adapters.llama.model_paths import MMPROJ_FIELD, check_hides_no_file, check_model_file
from warpcore.server.adapters.redaction import redact_key_shapes
from warpcore.server.announce import exposure_warning, serving_line
from warpcore.server.core.domain import LoadSpec, LocalSettings
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.limits import Limits
from warpcore.server.core.policy import default_policy
from warpcore.server.core.pulls import Pulls
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.doors import open_doors
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID, embedded_load_specs
from warpcore.server.env_names import LookedUp, unread_variables
from warpcore.server.heap import serving_heap
from warpcore.server.logs import configure_logging
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.addresses import host_port
from warpcore.server.rpc.server import ServingOptions
from warpcore.server.server_settings import ServerSettings
from warpcore.server.setting_values import SettingsError, UsageError, requested_log_format
from warpcore.server.settings import parse_settings
from warpcore.server.stop_signals import STOP_SIGNALS

_log = logging.getLogger("warpcore.server")


def serving_options(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServingOptions:
    return ServingOptions(
        tls=settings.tls,
        token=settings.token,
        limits=Limits(
            max_streams_per_model=settings.max_streams_per_model,
            max_queue_per_model=settings.max_queue_per_model,
            max_tokens=settings.max_tokens_limit,
            max_streams_per_api_model=settings.max_streams_per_api_model,
            max_queue_per_api_model=settings.max_queue_per_api_model,
            max_api_models=settings.max_api_models,
            stalled_reader_timeout=settings.stalled_reader_timeout,
        ),
        max_message_bytes=settings.max_message_bytes,
        api_overrides=default_policy(settings.api_overrides, settings.listen, settings.allowed_api_hosts),
        residency=ResidencyPolicy(settings.keep_alive, settings.max_loaded_models, settings.max_loaded_bytes),
        pulls=Pulls(hub_download(env if env is not None else os.environ)) if settings.allow_pull else None,
    )


def startup_models(settings: ServerSettings, env: Mapping[str, str]) -> list[LoadSpec]:
    """Everything to load before reporting SERVING; a bad config file fails here, before the server starts, and so
    does a lazy model that its first call could not load (its settings, its files), and a model of the file under
    an id of the embedded default model's: both cannot have it."""
    specs = read_preload(settings.config, env) if settings.config else []
    taken = sorted({spec.model_id for spec in specs} & {EMBEDDED_MODEL_ID, EMBEDDED_EMBEDDING_MODEL_ID})
    if settings.default_model and taken:
        raise ConfigError(
            f"{settings.config}: model id {', '.join(map(repr, taken))} is the embedded default model's; choose"
            " another id, or start with --no-default-model"
        )
    hosted = sum(spec.backend.hosted for spec in specs)  # lazy ones too: refused at their first call otherwise
    if settings.max_api_models is not None and hosted > settings.max_api_models:
        raise ConfigError(
            f"{settings.config} declares {hosted} hosted-API models, more than the server holds at once"
            f" (--max-api-models {settings.max_api_models}); raise --max-api-models (WARPCORE_MAX_API_MODELS)"
        )
    for spec in specs:
        if spec.lazy:
            _check_unloaded(spec, settings, env)
    if settings.default_model:
        specs[:0] = embedded_load_specs(settings.models_path)
    return specs


def _check_unloaded(spec: LoadSpec, settings: ServerSettings, env: Mapping[str, str]) -> None:
    """What loading a lazy model at its first Generate would refuse without loading it, refused now as a model
    loaded at start is: its settings with the environment's, and its files (one that is not there is most likely a
    typo, better told to the operator than to a client)."""
    try:
        check_unloaded(spec.backend, spec.settings, env)
    except WarpcoreError as error:
        raise _startup_failure(error, spec, "declare lazy") from None
    if spec.backend.hosted:
        try:
            check_hides_no_file(spec, str(settings.models_path))
        except WarpcoreError as error:
            raise _startup_failure(error, spec, "declare lazy") from None
        return
    files = {"model": spec.name}
    if isinstance(spec.settings, LocalSettings) and spec.settings.mmproj is not None:
        files[MMPROJ_FIELD] = spec.settings.mmproj
    for field, name in files.items():
        try:
            present = check_model_file(name, str(settings.models_path), field, pulls=settings.allow_pull)
        except WarpcoreError as error:
            raise _startup_failure(error, spec, "declare lazy") from None
        if not present:
            _log.warning(
                "lazy model %s: %s is not under %s yet; pull it (`warpcore pull %s`) before the first call naming it",
                spec.model_id,
                name,
                settings.models_path,
                name,
            )


def _startup_failure(error: WarpcoreError, spec: LoadSpec, doing: str) -> WarpcoreError:
    error.message = f"cannot {doing} startup model {spec.model_id!r} ({spec.name}): {error.message}"
    return error


async def serve(settings: ServerSettings, env: Mapping[str, str]) -> None:
    try:
        settings.models_path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        cause = "a file is there, not a folder" if isinstance(error, FileExistsError) else error.strerror
        raise RuntimeError(f"cannot use {settings.models_path} as --models-path (MODELS_PATH): {cause}") from None
    server_env = {**env, "MODELS_PATH": str(settings.models_path)}
    check_environment(server_env)
    config_env = LookedUp(server_env)  # the variables a config's api_key_env names are read too
    specs = startup_models(settings, config_env)
    for warning in unread_variables(env, settings.variables | config_env.names):
        _log.warning(warning)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping.set)
    registry = ModelRegistry(functools.partial(create_adapter, env=server_env), str(settings.models_path))
    http_address = (settings.http_host, settings.http_port) if settings.http_port is not None else None
    options = serving_options(settings, server_env)
    doors = await open_doors(registry, settings.listen, options, http_address)
    server = doors.grpc
    metrics_http = None
    heap = contextlib.ExitStack()  # the collector's settings while serving, restored once stopped
    stopped = False
    try:
        if settings.metrics_port is not None:
            try:
                metrics_http = server.metrics.serve(settings.metrics_host, settings.metrics_port, settings.tls)
            except OSError as error:
                where = host_port(settings.metrics_host, settings.metrics_port)
                raise RuntimeError(f"cannot serve metrics on {where}: {error.strerror}") from None
        if await _unless_stopped(_load_startup_models(server.engine, specs, settings.default_model), stopping):
            heap.enter_context(serving_heap())
            await doors.set_serving(True)
            http = doors.http.port if doors.http else None
            if exposed := exposure_warning(settings, options, server.ports, http):
                _log.warning(exposed)
            metrics = metrics_http.server_port if metrics_http else None
            _log.info(serving_line(settings, options, server.ports, http, metrics))
            await stopping.wait()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, server.streams.end_now)
        _log.info("shutting down: in-flight calls get %g s (a second interrupt ends them now)", settings.grace)
        stopped = True
    finally:
        await doors.stop(settings.grace)
        heap.close()
        # Stopped, the process exits now (_serve_then_exit) and its exit returns the models' memory at once, where
        # freeing a local model takes up to seconds each, past the grace. A start that failed frees them: Python's
        # own exit follows, which llama.cpp's threads must not outlive.
        if not stopped:
            await registry.close()
        if metrics_http is not None:
            metrics_http.shutdown()
    _log.info("stopped")


async def _load_startup_models(engine: Engine, specs: Sequence[LoadSpec], default_model: bool) -> None:
    # All known before any loads: a call naming one whose load comes later waits for that load, for a router that
    # reads no health (LiteLLM) takes a model not found as final.
    for spec in specs:
        engine.declare(spec, loads_at_start=not spec.lazy)
    for spec in specs:
        if spec.lazy:
            _log.info("declared %s (%s), loaded by the first call naming it", spec.model_id, spec.name)
            continue
        try:
            await engine.load(spec, from_operator=True)  # the registry logs the load
        except WarpcoreError as error:
            raise _startup_failure(error, spec, "load") from None
    # A budget of local models smaller than what loads at start unloads one to make room for the next: the server
    # would report SERVING without a model the operator asked to have loaded.
    unloaded = [spec.model_id for spec in specs if not spec.lazy and engine.registry.find(spec.model_id) is None]
    if unloaded:
        raise ConfigError(
            f"startup model{'s' * (len(unloaded) > 1)} {', '.join(map(repr, unloaded))} did not stay loaded: loading"
            " the ones after unloaded it to keep within --max-loaded-models or --max-loaded-memory; declare some"
            f" models lazy = true in --config{' (or start with --no-default-model)' * default_model}, or raise the"
            " limit"
        )


async def _unless_stopped(work: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Whether `work` ended (its failure raised) before `stopping` was set; if not, it is cancelled. A stop signal
    that comes while the startup models load ends the start: a large model, or an upstream that does not answer,
    would otherwise hold a Pod that was asked to go until it is killed."""
    working = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((working, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        ended = working.done()
        if not ended:
            working.cancel()  # a llama.cpp load goes on in its thread; the process exits without it
    if not ended:
        _log.info("stopped while loading the startup models")
        return False
    working.result()
    return True


def _run(event_loop: str, main: Coroutine[Any, Any, None]) -> None:
    if event_loop == "asyncio":
        asyncio.run(main)
        return
    try:
        import uvloop  # not built for Windows, where asyncio's loop serves
    except ImportError:
        main.close()
        raise RuntimeError("uvloop is not installed here; install it or use --event-loop asyncio") from None
    uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    try:
        settings = parse_settings(arguments, os.environ)
    except SettingsError as error:
        log_format = requested_log_format(arguments, os.environ)
        if log_format == "json":  # a text line is written as it is
            configure_logging(log_format)
        _refuse_start(error, log_format)
    configure_logging(settings.log_format)
    try:
        _run(settings.event_loop, _serve_then_exit(settings, os.environ))
    except (ConfigError, WarpcoreError, RuntimeError, OSError) as error:
        # RuntimeError: grpc could not bind an address, the metrics port was taken, uvloop is missing; it says which.
        _refuse_start(error, settings.log_format)


def _refuse_start(error: Exception, log_format: str) -> NoReturn:
    """Exit with the one line saying why the server cannot start: with JSON logs, a JSON line as the others (a
    crash-looping Pod leaves only this one, for a collector to read), whichever setting is wrong. Redacted as every
    log line is: a model's name, say, may be a key written where the name goes. On one line, as the README promises:
    an upstream's words quoted in it may hold line breaks. A command line argparse cannot read is status 2 (after its
    usage, in text), as for any command."""
    said = " ".join(str(getattr(error, "message", None) or error).split())
    usage = error.usage if isinstance(error, UsageError) else None
    message = redact_key_shapes(f"warpcore-server: {'' if usage is None else 'error: '}{said}")
    if log_format == "json":
        _log.critical(message)
    else:
        sys.stderr.write(f"{usage or ''}{message}\n")
    sys.exit(1 if usage is None else 2)


async def _serve_then_exit(settings: ServerSettings, env: Mapping[str, str]) -> None:
    await serve(settings, env)
    # Stopped: exit now. A llama.cpp load still running cannot be interrupted, and asyncio.run would wait for the
    # tasks waiting on it, and Python, at exit, for its thread.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
