"""Argparse types of the warpcore command: numbers held to what their proto field carries, keep-alives, files."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from warpcore._api_settings import MAX_API_TIMEOUT_SECONDS
from warpcore._keep_alive import FOREVER, MAX_KEEP_ALIVE_SECONDS, SPELLINGS, parse_keep_alive
from warpcore.client._models import keep_alive_range

UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1
"""The largest values the proto's uint32 and int32 fields carry: protobuf refuses a larger int with ValueError."""

Number = TypeVar("Number", int, float)


def bounded(
    kind: Callable[[str], Number], low: Number, high: Number, *, above: bool = False
) -> Callable[[str], Number]:
    """An argparse type= for a number from `low` (or, with `above`, greater than it) to `high`.

    The bounds are what the field's wire type can carry, the range the protocol gives the field (a temperature's,
    warpcore._sampling_ranges), and what is meaningless whatever the server: a server's own limits (its
    --max-tokens-limit) may differ between servers and versions, so it stays the one to enforce them."""
    word = "an integer" if kind is int else "a number"
    shown = [f"{bound:g}" if isinstance(bound, float) else str(bound) for bound in (low, high)]  # 0, not 0.0
    wanted = f"{word} {'greater than' if above else 'from'} {shown[0]} {'and at most' if above else 'to'} {shown[1]}"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}") from None
        # Written so that NaN fails both comparisons, and infinity the upper one.
        if not ((low < value if above else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value

    return parse


def text(value: str) -> str:
    """The argparse type of every argument without one of its own: Python reads a byte of argv that is not UTF-8 as
    a lone surrogate, which neither protobuf nor gRPC can send (a traceback, else)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not UTF-8 text") from None
    return value


def stop_text(value: str) -> str:
    """A stop sequence: UTF-8 text, not empty (which would stop before anything)."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return text(value)


COUNT = bounded(int, 1, UINT32_MAX)
"""A count of tokens (or threads, or slots): zero or negative is meaningless, and the field is a uint32."""
API_TIMEOUT = bounded(float, 0.0, float(MAX_API_TIMEOUT_SECONDS), above=True)
"""An upstream's timeout, in the protocol's range: 0 or less would leave no time at all."""


def keep_alive(text: str) -> float | str:
    """Seconds, or "forever", from a keep_alive written as the server's --keep-alive takes it, within the protocol's
    range, which the server refuses in the same words."""
    seconds = parse_keep_alive(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"must be {SPELLINGS}, not {text!r}")
    if math.isinf(seconds):
        return FOREVER
    if seconds > MAX_KEEP_ALIVE_SECONDS:
        raise argparse.ArgumentTypeError(f"{keep_alive_range()}, not {text}")
    return seconds


def read_file(path: str) -> str:
    """The text of the file at `path` (an argparse type: a usage error names the option), without one byte order mark
    starting it, which a file saved by a Windows editor carries."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not UTF-8 text") from None


def json_schema_file(path: str) -> dict[str, Any]:
    """The JSON Schema in the file at `path`."""
    try:
        schema = json.loads(read_file(path))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{path} is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise argparse.ArgumentTypeError(f"{path} does not hold a JSON object")
    return schema


_NAME_LIKE = re.compile(r"-?[a-z][a-z-]{0,31}|--[a-z][a-z0-9-]{0,31}")
"""What a usage error may quote of a word it did not take: a command's name as a person types one (no capital, no
digit) or a flag's (`--http2`), never what may be an unknown flag's value, such as a key, which has them."""


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, whose error for a word taken as the command (`warpcore --api-key sk-... health` takes the
    key for it, the flag being unknown) does not quote a word that is no command's name as a person types one."""

    def error(self, message: str) -> NoReturn:
        super().error(_INVALID_CHOICE.sub(_choice_shown, message))


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")


def _choice_shown(match: re.Match[str]) -> str:
    return match.group() if _NAME_LIKE.fullmatch(match.group(1)) else "invalid choice, not shown"


def unrecognized(extras: Sequence[str]) -> str:
    """argparse's complaint about arguments no command takes, without what may be an unknown flag's value: a secret
    (`--api-key sk-...`, a flag this command does not have), which the message would put on a terminal, in a CI log
    or on a shared screen. Shown: the name of a long flag (what follows `=` not), a short flag alone (`-k`, not with a
    value joined to it), and the words before any flag, each only when it reads as a name a person types; every word
    after a flag may be its value."""
    shown: list[str] = []
    hidden = 0
    after_flag = False
    for word in extras:
        flag = (
            word.partition("=")[0]
            if word.startswith("--")
            else word
            if word.startswith("-") and len(word) == 2
            else None
        )
        if flag is not None and _NAME_LIKE.fullmatch(flag):
            shown.append(flag)
            hidden += flag != word
            after_flag = True
        elif after_flag or not _NAME_LIKE.fullmatch(word):
            hidden += 1
        else:
            shown.append(word)
    words = f"unrecognized arguments: {' '.join(shown)}".rstrip()
    if hidden:
        words += (
            " (a word not shown: it may be a secret)"
            if hidden == 1
            else f" ({hidden} words not shown: they may be secrets)"
        )
    if "--api-key" in shown:
        words += "; an API key is read from --api-key-env NAME or --api-key-file PATH, never from the command line"
    return words
