"""The warpcore command: generate, chat, embed, count tokens, manage models and check health from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from warpcore._sampling_ranges import ANTHROPIC_MAX_TEMPERATURE, MAX_PENALTY, MAX_TEMPERATURE
from warpcore.client import (
    DEFAULT_TARGET,
    Backend,
    Client,
    OptionError,
    WarpcoreError,
    __version__,
)
from warpcore.client._checks import MAX_TIMEOUT
from warpcore.client._cli_args import (
    COUNT,
    UINT32_MAX,
    CommandParser,
    bounded,
    json_schema_file,
    stop_text,
    text,
    unrecognized,
)
from warpcore.client._cli_load import add_api_options, add_load_options, load
from warpcore.client._commands import (
    CliError,
    chat,
    generate,
    health,
    pull,
    tokens,
    unload,
)
from warpcore.client._embed_command import embed
from warpcore.client._failures import failure_words
from warpcore.client._model_list import models
from warpcore.client._tools import levels
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

CLIENT_OPTIONS = ("tls", "root_certificates", "client_certificate", "client_key", "token", "timeout")
BACKENDS = [backend.value for backend in Backend]


Command = Callable[[Client, argparse.Namespace], int]


def connect(args: argparse.Namespace) -> Client:
    """A client from the global options; the ones not given keep the SDK's defaults."""
    options: dict[str, Any] = {name: getattr(args, name) for name in CLIENT_OPTIONS if getattr(args, name)}
    return Client(args.target, **options)


def parser() -> argparse.ArgumentParser:
    root = CommandParser(
        prog="warpcore",
        # Each flag by its whole name only, as the server takes its own: an abbreviation would change meaning once a
        # later flag shares its start.
        allow_abbrev=False,
        description=__doc__,
        epilog="gRPC's own log lines are off unless GRPC_VERBOSITY (ERROR, INFO or DEBUG) or GRPC_TRACE asks for them.",
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    root.add_argument("--target", type=text, help=f"server address (default: $WARPCORE_TARGET, else {DEFAULT_TARGET})")
    root.add_argument("--token", type=text, help="bearer token (default: $WARPCORE_TOKEN)")
    root.add_argument(
        "--timeout", type=bounded(float, 0.0, MAX_TIMEOUT, above=True), metavar="SECONDS", help="deadline of each call"
    )
    root.add_argument("--tls", action="store_true", help="use TLS (implied by any certificate option)")
    root.add_argument("--root-certificates", metavar="PATH", help="PEM file of the CAs to trust")
    root.add_argument("--client-certificate", metavar="PATH", help="PEM certificate chain for mutual TLS")
    root.add_argument("--client-key", metavar="PATH", help="PEM private key for mutual TLS")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        # In place of argparse's own default type, which takes each argument as it is; not the root's, whose
        # default type would check the whole command line as COMMAND.
        sub.register("type", None, text)
        sub.set_defaults(run=run, parser=sub)  # parser: for usage errors found once the command runs
        return sub

    def prompting(sub: argparse.ArgumentParser) -> None:
        """The options that can change how many tokens the prompt takes."""
        sub.add_argument("--model", metavar="ID", help="model id (default: the only loaded model)")
        sub.add_argument("--system", metavar="TEXT", help="system prompt (default: none)")
        sub.add_argument(
            "--json-schema", type=json_schema_file, metavar="FILE", help="answer in JSON valid against this schema"
        )
        sub.add_argument("--reasoning-effort", choices=levels(tools_pb2.ReasoningEffort), help="how hard to think")
        sub.add_argument("--reasoning-budget", type=COUNT, metavar="N", help="at most this many tokens of thinking")
        sub.add_argument(
            "--adaptive-thinking", action="store_true", help="let the model decide how much to think (Anthropic)"
        )

    def generation(sub: argparse.ArgumentParser) -> None:
        prompting(sub)
        sub.add_argument(
            "--max-tokens",
            type=COUNT,
            metavar="N",
            help="at most this many tokens per reply (default: 256); the server refuses more than its own limit"
            " (its --max-tokens-limit, by default 32768) with INVALID_ARGUMENT",
        )
        sub.add_argument(
            "--temperature",
            type=bounded(float, 0.0, MAX_TEMPERATURE),
            metavar="T",
            help=f"sampling temperature, 0 (greedy) to {MAX_TEMPERATURE:g}, Anthropic to {ANTHROPIC_MAX_TEMPERATURE:g}"
            " (default: the backend's; llama.cpp 0.8)",
        )
        sub.add_argument(
            "--stop",
            action="append",
            type=stop_text,
            metavar="X",
            help="stop before this text; repeatable (default: none)",
        )
        sub.add_argument(
            "--seed",
            type=bounded(int, 0, UINT32_MAX),
            metavar="N",
            help="seed for sampling the same text again (default: a new one each time; not Anthropic)",
        )
        for penalty, effect in (("presence", "already in the reply"), ("frequency", "by how often the reply has it")):
            sub.add_argument(
                f"--{penalty}-penalty",
                type=bounded(float, -MAX_PENALTY, MAX_PENALTY),
                metavar="P",
                help=f"lower the score of each token {effect}, {-MAX_PENALTY:g} to {MAX_PENALTY:g}",
            )
        sub.add_argument("--verbosity", choices=levels(pb.Verbosity), help="how much to say (OpenAI models)")
        sub.add_argument(
            "--no-prompt-cache",
            action="store_true",
            help="keep each prompt out of a local model's prompt cache: neither served from it nor left in it (a"
            " hosted provider's own caching is not affected)",
        )
        sub.add_argument(
            "--show-reasoning", action="store_true", help="print the model's reasoning on stderr (dimmed on a terminal)"
        )

    sub = command("generate", generate, "stream a completion of PROMPT (none, or -: read from stdin)")
    generation(sub)
    sub.add_argument("--backend", choices=BACKENDS, help="load --model from this backend first if it is not loaded")
    sub.add_argument("prompt", nargs="?", metavar="PROMPT")

    generation(
        command(
            "chat",
            chat,
            "chat with a model, one line a turn; Ctrl-C stops a reply (forgetting that exchange), /exit, end of input"
            " or Ctrl-C at the prompt quits",
        )
    )

    sub = command("embed", embed, "print one JSON line per TEXT (default: stdin lines) with its vector")
    sub.add_argument("--model", metavar="ID", help="model id (default: the only loaded model that embeds)")
    sub.add_argument("--dimensions", type=COUNT, metavar="N", help="vector length, for models that can shorten it")
    sub.add_argument(
        "--no-normalize", dest="normalize", action="store_false", default=None, help="vectors as the model pools them"
    )
    sub.add_argument("--truncate", action="store_true", default=None, help="cut texts longer than the context")
    sub.add_argument("texts", nargs="*", metavar="TEXT")

    sub = command("tokens", tokens, "print the exact number of prompt tokens PROMPT (none, or -: stdin) takes")
    prompting(sub)
    sub.add_argument("--chat", action="store_true", help="count PROMPT as a user message, chat template applied")
    sub.add_argument("--list", action="store_true", help="print each token's id and text first (llama.cpp models)")
    sub.add_argument("prompt", nargs="?", metavar="PROMPT")

    sub = command("models", models, "list the loaded models, or with --backend also those it offers")
    sub.add_argument("--backend", choices=BACKENDS, help="only this backend's models, and those it offers to load")
    add_api_options(sub)
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_argument(
        "--residency",
        action="store_true",
        help="also each loaded model's estimated memory, slots busy/total, queue, keep-alive and time left idle",
    )

    add_load_options(command("load", load, "load MODEL and print its id"))

    command("unload", unload, "unload a model by id").add_argument("id", metavar="ID")

    sub = command("pull", pull, "download MODEL onto the server (hf:owner/repo:file.gguf), with a progress bar")
    sub.add_argument(
        "model", metavar="MODEL", help="e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )
    sub.add_argument(
        "--revision", metavar="REV", help="branch, tag or commit (default: the file already there, else main)"
    )

    sub = command("health", health, "print the server's health; exit 0 only when SERVING")
    sub.add_argument("--service", default="", metavar="NAME", help="service to check (default: the whole server)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    root = parser()
    args, extras = root.parse_known_args(argv)
    if extras:  # argparse's own message would quote them: a secret among them too
        root.error(unrecognized(extras))
    if sys.stdout is None:  # the command started with it closed (>&-): nowhere for its answer to go
        print("warpcore: stdout is closed", file=sys.stderr)
        return 1
    try:
        with connect(args) as client:
            run: Command = args.run
            return run(client, args)
    except OptionError as error:  # e.g. a certificate file that cannot be read: a usage error, as argparse's own
        root.error(f"argument {error.describe(lambda option: '--' + option.replace('_', '-'))}")
    except UnicodeDecodeError:  # the one text the command decodes itself is stdin's (a file's has its own error)
        args.parser.error("stdin is not UTF-8 text")
    except WarpcoreError as error:
        print(f"warpcore: {failure_words(error, args)}", file=sys.stderr)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, as the shell reports a command killed by a closed pipe
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT
    except (CliError, OSError) as error:  # OSError: e.g. stdin or stdout failing
        print(f"warpcore: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
