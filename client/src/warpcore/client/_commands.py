"""What each subcommand of the warpcore command does, given its parsed arguments and a connected client."""

from __future__ import annotations

import argparse
import codecs
import io
import json
import sys
from typing import Any, TextIO

from warpcore.client import (
    Client,
    FinishReason,
    GenerateResponse,
    Message,
    NotFoundError,
    PullProgress,
    ReasoningDelta,
    TextDelta,
    WarpcoreError,
)
from warpcore.client._failures import failure_words

DIM, PLAIN = "\x1b[2m", "\x1b[0m"


TASKS = {"generate": "generate", "embed": "embed", "count_tokens": "count tokens exactly"}
"""What each task `pick_model` chooses for is called in its messages."""


class CliError(Exception):
    """A failure of the command itself rather than of a call, e.g. no model to choose."""


def pick_model(
    client: Client, model: str | None, backend: str | None, task: str = "generate", *, loads: bool = False
) -> str:
    """The id to use: --model (loaded first if it is not and --backend is given, for a command that `loads`), else
    the only one loaded that can do `task` (a Capabilities field: generate, embed, count_tokens)."""
    if model is None:
        listed = [m for m in client.list_models() if backend in (None, m.backend)]
        able = [m.id for m in listed if m.state == "ready" and getattr(m.capabilities, task, False)]
        # None loaded can: then one the server loads on first use (declared lazy) or is loading, of unknown powers.
        able = able or [m.id for m in listed if m.state in ("available", "loading") and m.capabilities is None]
        if len(able) != 1:
            if able:
                raise CliError(f"several loaded models can {TASKS[task]} ({', '.join(able)}); choose one with --model")
            if listed:
                loaded = ", ".join(m.id for m in listed)
                raise CliError(
                    f"none of the loaded models ({loaded}) can {TASKS[task]}; load one that can, or give --model"
                )
            or_load = ", or give --model and --backend" if loads else ""
            raise CliError(f"no model is loaded; load one with `warpcore load`{or_load}")
        return able[0]
    if backend is not None and model not in {m.id for m in client.list_models()}:
        client.load_model(model, backend=backend, model_id=model)
    return model


def stream_reply(
    client: Client, model_id: str, out: TextIO, reasoning: TextIO | None = None, **request: Any
) -> GenerateResponse:
    """Write the generated text to `out` as it comes, then a newline, and the model's reasoning to `reasoning` (if
    given; dimmed on a terminal); return the final response."""
    dim, plain = (DIM, PLAIN) if reasoning is not None and reasoning.isatty() else ("", "")
    thought = partial = False
    with client.generate(model_id, stream=True, **request) as stream:
        try:
            for event in stream:
                if isinstance(event, TextDelta):
                    if event.text:  # before the write: Ctrl-C may come as soon as the text is out
                        partial = not event.text.endswith("\n")
                    out.write(event.text)
                    out.flush()
                elif isinstance(event, ReasoningDelta) and reasoning is not None and event.text:
                    reasoning.write(f"{dim}{event.text}{plain}")
                    reasoning.flush()
                    thought = True
            response = stream.get_final_response()
        except (WarpcoreError, KeyboardInterrupt):
            # The text cut short ends its line, so that the error line after it is a line of its own.
            if partial:
                out.write("\n")
                out.flush()
            raise
    if thought and reasoning is not None:
        reasoning.write("\n")
    out.write("\n")
    out.flush()
    return response


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation options given on the command line."""
    names = (
        "system",
        "max_tokens",
        "temperature",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
        "reasoning_budget",
        "verbosity",
    )
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    for flag in ("adaptive_thinking", "no_prompt_cache"):
        if getattr(args, flag, False):
            options[flag] = True
    if args.json_schema is not None:
        options["response_format"] = args.json_schema
    return options


def finish_of(response: GenerateResponse) -> str:
    """The finish reason, e.g. "length", and "length (context window full)" when more --max-tokens would not help."""
    return (
        f"{response.finish_reason} (context window full)"
        if response.context_window_exceeded
        else response.finish_reason
    )


def usage_line(response: GenerateResponse) -> str:
    """E.g. "[12 prompt + 64 completion tokens, 512.3 tokens/s, first token 0.02 s, finish: length]"; "usage not
    reported" in place of the counts and the speed when the backend reported none."""
    usage, timings = response.usage, response.timings
    if usage is None:
        parts = ["usage not reported"]
    else:
        parts = [f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"]
        if timings.total > 0:
            parts.append(f"{usage.completion_tokens / timings.total:.1f} tokens/s")
    if timings.time_to_first_token is not None:
        parts.append(f"first token {timings.time_to_first_token:.2f} s")
    parts.append(f"finish: {finish_of(response)}")
    return f"[{', '.join(parts)}]"


def stdin() -> TextIO:
    """sys.stdin, which Python leaves None when the command starts with it closed (`<&-`). Strict: under a C or
    UTF-8 locale it would read a byte that is not UTF-8 as a lone surrogate, which protobuf cannot send. UTF-8 read
    without one byte order mark starting it, which a file saved by a Windows editor carries and is no part of its
    text."""
    if sys.stdin is None:
        raise CliError("stdin is closed: give the text as an argument")
    # Before the first read, which alone may change it; not when a program running the command put another in place.
    if isinstance(sys.stdin, io.TextIOWrapper):
        utf8 = _is_utf8(sys.stdin.encoding)
        if utf8 or sys.stdin.errors != "strict":
            sys.stdin.reconfigure(encoding="utf-8-sig" if utf8 else None, errors="strict")
    return sys.stdin


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def prompt_of(args: argparse.Namespace) -> str:
    """PROMPT, or stdin when it is not given or is "-" (as Unix tools read it)."""
    return args.prompt if args.prompt not in (None, "-") else stdin().read().removesuffix("\n")


def generate(client: Client, args: argparse.Namespace) -> int:
    prompt = prompt_of(args)
    if not prompt:
        # Checked here rather than by the server, whose answer names protocol fields the user never set.
        usage: argparse.ArgumentParser = args.parser
        usage.error("a prompt is needed: give PROMPT as an argument or write it on stdin")
    model_id = pick_model(client, args.model, args.backend, loads=True)
    reasoning = sys.stderr if args.show_reasoning else None
    try:
        response = stream_reply(client, model_id, sys.stdout, reasoning, prompt=prompt, **generation_options(args))
    except WarpcoreError as error:
        if error.response is not None:  # begun, then failed: what it cost
            print(usage_line(error.response), file=sys.stderr)
        raise
    if args.json_schema is not None and (response.finish_reason is not FinishReason.STOP or response.refusal):
        # A text cut short (max_tokens), or declined, is no JSON to parse: not the answer the schema asked for.
        ended = "declined by the model" if response.refusal else f"ended with finish {finish_of(response)}"
        raise CliError(f"the answer {ended} before it was the JSON --json-schema asks for")
    print(usage_line(response), file=sys.stderr)
    return 0


def chat(client: Client, args: argparse.Namespace) -> int:
    """Ctrl-C during a reply stops that reply (its call cancelled) and forgets the exchange, so that the next turn is
    not asked after a question left unanswered; Ctrl-C at the prompt, or the end of input, quits. A turn that fails
    (a conversation grown past the model's context, an upstream that is down) is told and forgotten the same way,
    and the session goes on; it then ends with status 1, so that a script feeding it learns that a turn failed."""
    model_id = pick_model(client, args.model, None)
    history: list[Message] = []
    failed = False
    while True:
        sys.stderr.write("> ")
        sys.stderr.flush()
        line = stdin().readline()
        if not line or line.strip() == "/exit":
            return 1 if failed else 0
        if not line.strip():
            continue
        history.append(Message("user", line.rstrip("\n")))
        reasoning = sys.stderr if args.show_reasoning else None
        try:
            reply = stream_reply(client, model_id, sys.stdout, reasoning, messages=history, **generation_options(args))
        except KeyboardInterrupt:
            history.pop()
            print("[reply stopped]", file=sys.stderr)
            continue
        except WarpcoreError as error:
            history.pop()
            failed = True
            print(f"[turn failed, forgotten: {failure_words(error, args)}]", file=sys.stderr)
            continue
        history.append(reply.message())


def shown_piece(piece: bytes) -> str:
    """A token's text as a JSON string, each whole character as itself; a piece of a character's UTF-8 (a byte token)
    as its bytes, \\xf0 (as U+FFFD, different tokens would read alike), and a character that does not print (a
    control, a zero-width joiner, a line separator) as its JSON escape, so that every token shows, on a line of its
    own."""
    quoted = json.dumps(piece.decode("utf-8", errors="backslashreplace"), ensure_ascii=False)
    return "".join(character if character.isprintable() else json.dumps(character)[1:-1] for character in quoted)


def tokens(client: Client, args: argparse.Namespace) -> int:
    prompt = prompt_of(args)
    if not prompt:
        usage: argparse.ArgumentParser = args.parser
        usage.error("a prompt is needed: give PROMPT as an argument or write it on stdin")
    model_id = pick_model(client, args.model, None, "count_tokens")
    options = generation_options(args)
    messages = [Message("user", prompt)] if args.chat else None
    counted = client.count_tokens(
        model_id, prompt=None if args.chat else prompt, messages=messages, include_tokens=args.list, **options
    )
    for token in counted.tokens:
        print(f"{token.id}\t{shown_piece(token.piece)}")
    print(counted.prompt_tokens)
    return 0


def unload(client: Client, args: argparse.Namespace) -> int:
    print(client.unload_model(args.id).id)
    return 0


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    """`[#######-------]  47%  12.3/26.1 MiB`, or only the MiB so far while the size is unknown."""
    mib = 1024 * 1024
    if not total:
        return f"{done / mib:.1f} MiB"
    filled = width * done // total
    return f"[{'#' * filled}{'-' * (width - filled)}] {100 * done // total:3d}%  {done / mib:.1f}/{total / mib:.1f} MiB"


def pull(client: Client, args: argparse.Namespace) -> int:
    """Progress on stderr, redrawn in place; the pulled model on stdout. Ctrl-C cancels the pull (a later pull
    resumes it)."""
    drawn = False  # a bar is on the line: end it before anything else is printed
    try:
        for event in client.pull_model(args.model, revision=args.revision):
            if isinstance(event, PullProgress):
                print(f"\r{progress_bar(event.done, event.total)}", end="", file=sys.stderr, flush=True)
                drawn = True
                continue
            if drawn:
                print(file=sys.stderr)
                drawn = False
            checked = "already present" if event.already_present else f"sha256 {event.sha256}"
            print(f"{event.model}  {event.size} bytes  {checked}")
    finally:
        if drawn:
            print(file=sys.stderr)
    return 0


def health(client: Client, args: argparse.Namespace) -> int:
    try:
        status = client.health(args.service)
    except NotFoundError:
        # The health protocol's only NOT_FOUND, which comes without a message.
        raise CliError(f"health: the server knows no service {args.service!r}") from None
    print(status)
    return 0 if status == "SERVING" else 1
