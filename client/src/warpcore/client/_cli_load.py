"""`warpcore load`: an option for each setting load_model takes, and the command.

An API key is taken from an environment variable or a file, never as an option's value, which `ps` would show to
every user of the machine."""

from __future__ import annotations

import argparse
import os
import typing

from warpcore._api_settings import (
    MAX_API_TIMEOUT_SECONDS,
    NOT_AN_ENV_NAME,
    is_env_name,
    key_from_env,
    sendable_key,
    shown_env_name,
)
from warpcore._keep_alive import SPELLINGS
from warpcore._local_settings import MAX_PROMPT_CACHE_TOKENS
from warpcore.client import Backend, Client
from warpcore.client._cli_args import API_TIMEOUT, COUNT, INT32_MAX, bounded, keep_alive, read_file
from warpcore.client._options import NumaStrategy, Pooling

LOCAL = (
    "threads",
    "use_gpu",
    "gpu_layers",
    "use_mmap",
    "use_mlock",
    "numa_strategy",
    "chat_format",
    "parallel",
    "embedding",
    "pooling",
    "mmproj",
    "prompt_cache_tokens",
)
"""The LocalConfig settings, for --backend llama_cpp."""
API = ("api_key", "organization", "base_url", "api_timeout", "unlisted")
"""The ApiConfig settings (load_model's keywords), for the hosted backends."""


def api_key_from_env(name: str) -> str:
    """The key in the environment variable `name` (an argparse type: a usage error names the option), which the
    messages quote as the server's config file does: a key typed where its variable's name goes is not shown."""
    if not is_env_name(name):
        raise argparse.ArgumentTypeError(
            f"the value {NOT_AN_ENV_NAME}, not shown as it may be the key; name the variable that holds the key"
        )
    try:
        key = key_from_env(os.environ, name, "")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if key is None:
        raise argparse.ArgumentTypeError(f"the environment variable {shown_env_name(name)} is not set")
    return key


def api_key_from_file(path: str) -> str:
    """The key in the file at `path`, without the whitespace (a final newline) around it, by the rule of a key in a
    variable."""
    try:
        return sendable_key(read_file(path), path)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_load_options(sub: argparse.ArgumentParser) -> None:
    backends = [backend.value for backend in Backend]
    sub.add_argument("model", metavar="MODEL", help="e.g. hf:owner/repo:file.gguf, or an API model name")
    sub.add_argument(
        "--backend", choices=backends, default=Backend.LLAMA_CPP.value, help="where MODEL runs (default: %(default)s)"
    )
    sub.add_argument("--id", help="model id to load it as (default: MODEL, as the server spells it)")
    sub.add_argument(
        "--model-type",
        choices=("text_to_text", "text_to_embedding"),
        help="what the model does, where its settings or name do not say: text_to_embedding for an OpenAI-compatible"
        " server's embedding model named otherwise than text-embedding-* (default: a llama.cpp model's --embedding,"
        " a hosted model's name)",
    )
    sub.add_argument(
        "--context-size",
        type=COUNT,
        metavar="N",
        help="context window in tokens, 16 to 131072 (default: a local model's trained context capped at 4096;"
        " a hosted model's provider limit)",
    )
    sub.add_argument(
        "--keep-alive",
        type=keep_alive,
        metavar="DURATION",
        help=f"how long the model stays loaded once idle: {SPELLINGS}; 0: until its last generation ends (default:"
        " the server's --keep-alive); loading a loaded model with it changes it",
    )

    local = sub.add_argument_group("llama.cpp settings (--backend llama_cpp; unset: the server's LLAMA_* environment)")
    local.add_argument(
        "--threads",
        type=COUNT,
        metavar="N",
        help="CPU threads for generation and reading prompts, 1 to 1024 (default: LLAMA_THREADS, else the physical"
        " cores the server may use)",
    )
    local.add_argument(
        "--use-gpu",
        action=argparse.BooleanOptionalAction,
        help="offload layers to a GPU (default: LLAMA_USE_GPU, else no)",
    )
    local.add_argument(
        "--gpu-layers",
        type=bounded(int, -1, INT32_MAX),
        metavar="N",
        help="layers to offload with --use-gpu, -1: all (default: LLAMA_GPU_LAYERS, else -1)",
    )
    local.add_argument(
        "--use-mmap",
        action=argparse.BooleanOptionalAction,
        help="map the model file instead of reading it into memory (default: LLAMA_USE_MMAP, else yes)",
    )
    local.add_argument(
        "--use-mlock",
        action=argparse.BooleanOptionalAction,
        help="lock the model's memory so that it is never swapped out (default: LLAMA_USE_MLOCK, else no)",
    )
    local.add_argument(
        "--numa-strategy",
        choices=typing.get_args(NumaStrategy),
        help="NUMA placement, the first model loaded's for the whole server (default: LLAMA_NUMA_STRATEGY, else"
        " disabled)",
    )
    local.add_argument(
        "--chat-format",
        metavar="NAME",
        help="llama-cpp-python chat format, e.g. chatml (default: LLAMA_CHAT_FORMAT, else the GGUF's template)",
    )
    local.add_argument(
        "--parallel",
        type=COUNT,
        metavar="N",
        help="generations decoded together (continuous batching), 1 to 64, each with a KV cache of the whole"
        " context (default: LLAMA_PARALLEL, else 1)",
    )
    local.add_argument(
        "--prompt-cache-tokens",
        type=bounded(int, 0, MAX_PROMPT_CACHE_TOKENS),
        metavar="N",
        help=f"prompt tokens kept for later prompts that begin alike, at most {MAX_PROMPT_CACHE_TOKENS}; 0 turns the"
        " cache off"
        " (default: LLAMA_PROMPT_CACHE_TOKENS, else the context size)",
    )
    local.add_argument(
        "--embedding",
        action="store_true",
        default=None,
        help="load the model to embed instead of generating (default: to generate)",
    )
    local.add_argument(
        "--pooling",
        choices=typing.get_args(Pooling),
        help="with --embedding: how token vectors make one (default: the GGUF's, else mean)",
    )
    local.add_argument(
        "--mmproj",
        metavar="FILE",
        help="multimodal projector GGUF, named like a model, for image input (default: none)",
    )

    api = add_api_options(sub)
    api.add_argument(
        "--unlisted",
        action="store_true",
        default=None,
        help="load MODEL although the API does not list it, for a server that serves names it does not list (a"
        " router's wildcard route); a name it does not serve then fails each generate (default: the API must list"
        " it)",
    )


def add_api_options(sub: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The hosted API's settings a load, or a listing of what the API offers, is sent with."""
    api = sub.add_argument_group("hosted API settings (--backend openai or anthropic; unset: the server's environment)")
    key = api.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-env",
        dest="api_key",
        type=api_key_from_env,
        metavar="NAME",
        help="send the provider's API key held in environment variable NAME (default: the server's"
        " OPENAI_API_KEY or ANTHROPIC_API_KEY)",
    )
    key.add_argument(
        "--api-key-file",
        dest="api_key",
        type=api_key_from_file,
        metavar="PATH",
        help="send the API key in the file at PATH, surrounding whitespace left out (default: as --api-key-env)",
    )
    api.add_argument("--organization", metavar="ORG", help="OpenAI organization to bill (default: OPENAI_ORGANIZATION)")
    api.add_argument(
        "--base-url",
        metavar="URL",
        help="API base URL, e.g. http://127.0.0.1:8080/v1 for an OpenAI-compatible server; needs an API key of its"
        " own (default: OPENAI_API_BASE or ANTHROPIC_API_BASE, else the vendor's)",
    )
    api.add_argument(
        "--api-timeout",
        type=API_TIMEOUT,
        metavar="SECONDS",
        help="longest wait for the upstream to connect and for each piece of an answer, at most"
        f" {MAX_API_TIMEOUT_SECONDS} (default: OPENAI_TIMEOUT or ANTHROPIC_TIMEOUT, else 600)",
    )
    return api


def option(name: str) -> str:
    return "--api-key-env/--api-key-file" if name == "api_key" else f"--{name.replace('_', '-')}"


def given_settings(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, typing.Any]:
    """The backend settings among `names` given on the command line; a usage error for one the backend does not
    take (a hosted backend takes no local settings, and llama.cpp no API ones), or for any without a backend."""
    settings = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    hosted = args.backend != Backend.LLAMA_CPP.value
    wrong = [name for name in settings if (name in LOCAL) == hosted or args.backend is None]
    if wrong:
        usage: argparse.ArgumentParser = args.parser
        fits = "--backend llama_cpp" if wrong[0] in LOCAL else "--backend openai or anthropic"
        given = "without --backend" if args.backend is None else f"not --backend {args.backend}"
        usage.error(f"argument {option(wrong[0])}: only with {fits}, {given}")
    return settings


def load(client: Client, args: argparse.Namespace) -> int:
    settings = given_settings(args, (*LOCAL, *API))
    loaded = client.load_model(
        args.model,
        backend=args.backend,
        model_id=args.id,
        context_size=args.context_size,
        keep_alive=args.keep_alive,
        model_type=args.model_type,
        **settings,
    )
    print(loaded.id)
    return 0
