"""The warpcore-server command: serve the gRPC API, with the embedded default model loaded."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from warpcore.server.adapters.factory import create_adapter
from warpcore.server.app import start_server
from warpcore.server.embedded import EMBEDDED_MODEL_ID, embedded_load_spec
from warpcore.server.errors import WarpcoreError
from warpcore.server.registry import ModelRegistry

_log = logging.getLogger("warpcore.server")
DEFAULT_MODELS_PATH = Path.home() / ".cache" / "warpcore" / "models"


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="warpcore-server", description=__doc__)
    parser.add_argument(
        "--host", default=env.get("WARPCORE_HOST", "127.0.0.1"), help="address to bind (env WARPCORE_HOST)"
    )
    parser.add_argument("--port", type=int, default=env.get("WARPCORE_PORT", "50051"), help="port (env WARPCORE_PORT)")
    parser.add_argument(
        "--models-path",
        type=Path,
        default=Path(env.get("MODELS_PATH") or DEFAULT_MODELS_PATH),
        help=f"folder of GGUF models (env MODELS_PATH, default {DEFAULT_MODELS_PATH})",
    )
    parser.add_argument(
        "--no-default-model",
        dest="default_model",
        action="store_false",
        default=env.get("WARPCORE_DEFAULT_MODEL", "1") not in ("0", "false", "no"),
        help=f"do not load the embedded {EMBEDDED_MODEL_ID} model (env WARPCORE_DEFAULT_MODEL=0)",
    )
    parser.add_argument("--grace", type=float, default=30.0, help="seconds in-flight calls get on shutdown")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    args.models_path.mkdir(parents=True, exist_ok=True)
    server_env = {**env, "MODELS_PATH": str(args.models_path)}
    registry = ModelRegistry(functools.partial(create_adapter, env=server_env))
    server = await start_server(registry, f"{args.host}:{args.port}")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        if args.default_model:
            loaded = await registry.load(embedded_load_spec(args.models_path))
            _log.info("loaded %s (%d-token context)", loaded.id, loaded.info.context_size)
        await server.set_serving(True)
        _log.info("serving on %s:%d, models under %s", args.host, server.port, args.models_path)
        await stopping.wait()
        _log.info("shutting down")
    finally:
        await server.stop(args.grace)
        await registry.close()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    try:
        asyncio.run(serve(args, os.environ))
    except WarpcoreError as error:
        sys.exit(f"warpcore-server: {error.message}")
    except RuntimeError as error:  # grpc raises this when the address cannot be bound
        sys.exit(f"warpcore-server: {error}")
