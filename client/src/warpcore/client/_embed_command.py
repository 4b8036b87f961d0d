"""The warpcore embed command: texts from its arguments or stdin, in as few calls as the server takes, each text
named by its place in the command's input when the server refuses it."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Iterator

from warpcore.client import Client, WarpcoreError
from warpcore.client._commands import CliError, pick_model, stdin
from warpcore.client._extras import MAX_EMBED_INPUTS

_INPUT = re.compile(r"inputs\[(\d+)\]")
# The request fields a refusal may name, as the command's options set them.
_OPTIONS = {"options.truncate": "--truncate", "options.dimensions": "--dimensions"}


def _placed(error: WarpcoreError, places: list[str]) -> WarpcoreError | CliError:
    """`error` of an embed call, saying where in the command's input the text it refuses is, and the command's
    options for the request's fields; as it is when it names no input."""
    named = next((match for field in error.field_violations if (match := _INPUT.fullmatch(field))), None)
    if named is None or int(named.group(1)) >= len(places):
        return error
    message = _INPUT.sub("it", error.message)
    for field, option in _OPTIONS.items():
        message = message.replace(field, option)
    return CliError(f"{error.status.name}: {places[int(named.group(1))]}: {message}")


def stdin_lines() -> Iterator[tuple[str, str]]:
    """The lines of stdin that are not blank, without their newline, as they are read; each after where it is."""
    return ((f"stdin line {number}", line.rstrip("\n")) for number, line in enumerate(stdin(), 1) if line.strip())


def embed(client: Client, args: argparse.Namespace) -> int:
    """In calls of at most MAX_EMBED_INPUTS texts (fewer when the vectors of as many would not fit in one response,
    as the server says), each call's lines printed once it is answered: stdin may hold
    more texts than one call takes, and need not end before the first vectors are out. A text the server refuses is
    named by its place in the command's input (its stdin line, or its argument), not in its call."""
    given = ((f"argument {number}", text) for number, text in enumerate(args.texts, 1))
    texts = iter(given if args.texts else stdin_lines())
    batch = list(itertools.islice(texts, MAX_EMBED_INPUTS))
    if not batch:
        usage: argparse.ArgumentParser = args.parser
        usage.error("texts are needed: give them as arguments or write them on stdin, one a line")
    model_id = pick_model(client, args.model, None, "embed")
    prompt_tokens, size = 0, MAX_EMBED_INPUTS
    while batch:
        try:
            response = client.embed(
                model_id,
                [text for _, text in batch[:size]],
                dimensions=args.dimensions,
                normalize=args.normalize,
                truncate=args.truncate,
            )
        except WarpcoreError as error:
            fitting = int(error.metadata.get("max_inputs", "0")) if error.reason == "RESPONSE_TOO_LARGE" else 0
            if 0 < fitting < min(size, len(batch)):  # long vectors: as many a call as one response carries
                size = fitting
                continue
            raise _placed(error, [place for place, _ in batch[:size]]) from None
        done, batch = batch[:size], batch[size:]
        for (_, text), vector in zip(done, response.embeddings, strict=True):
            print(json.dumps({"input": text, "embedding": vector}))
        sys.stdout.flush()
        prompt_tokens += response.prompt_tokens
        batch += itertools.islice(texts, max(size - len(batch), 0))
    print(f"[{prompt_tokens} tokens]", file=sys.stderr)
    return 0
