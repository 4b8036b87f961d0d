"""Checks of arguments both clients take, made before any call so that a mistake fails where it is made, as
Python's own TypeError and ValueError, rather than inside protobuf or gRPC."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from warpcore.client._pickling import PicklableError

MAX_TIMEOUT = 10**8
"""Seconds (over three years): far beyond any call, and well below the ~1e10 past which gRPC fails a call at once
with DEADLINE_EXCEEDED."""


class OptionError(PicklableError, ValueError):
    """A client option that cannot be used, e.g. a certificate file that cannot be read, a max_retries gRPC would cut,
    or one given without the option it `needs`: every refusal of a client option but a value of the wrong type (a
    TypeError). A ValueError like the SDK's other bad arguments; the names are kept apart from the problem so that the
    CLI can name its own flags instead."""

    def __init__(self, option: str, problem: str, needs: str | None = None) -> None:
        self.option = option
        self.problem = problem
        self.needs = needs
        super().__init__(self.describe(str))

    def describe(self, name: Callable[[str], str]) -> str:
        """The message, with each option named as `name` names it."""
        if self.needs is None:
            return f"{name(self.option)}: {self.problem}"
        return f"{name(self.option)} needs {name(self.needs)} too: {self.problem}"


Refusal = Callable[[str, str], ValueError]
"""What a value out of range raises, made from the option's name and the problem: a call's arguments' plain
ValueError, or a client option's OptionError."""


def refused(option: str, problem: str) -> ValueError:
    return ValueError(f"{option} {problem}")


def known_options(given: Mapping[str, Any], known: Iterable[str]) -> None:
    """TypeError for a keyword option that is not one of `known` (with the nearest one, as a likely misspelling),
    where protobuf would otherwise name a message field the caller never saw."""
    names = sorted(known)
    for name in given:
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; the options are {', '.join(names)}"
            raise TypeError(f"unexpected option {name!r}{hint}")


def choice(option: str, value: Any, choices: Iterable[str]) -> str:
    """`value` lower-cased if it is one of `choices`, else a ValueError listing them."""
    accepted = list(choices)
    if isinstance(value, str) and value.lower() in accepted:
        return value.lower()
    raise ValueError(f"{option} is one of {', '.join(accepted)}, not {value!r}")


def timeout_seconds(option: str, value: Any, refusal: Refusal = refused) -> float | None:
    """`value` if it is None (no deadline) or a number of seconds gRPC can wait for, from just above 0 to
    MAX_TIMEOUT; otherwise TypeError or ValueError, since gRPC would fail every call with it, or fail only once
    called."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{option} is a number of seconds (or None for no deadline), not {type(value).__name__}")
    if not 0 < value <= MAX_TIMEOUT:  # NaN fails it too
        raise refusal(option, f"must be greater than 0 and at most {MAX_TIMEOUT} seconds, not {value!r}")
    return float(value)


def flag(option: str, value: Any) -> bool:
    """`value` if it is a bool, else a TypeError (protobuf's would name neither the option nor what it takes)."""
    if not isinstance(value, bool):
        raise TypeError(f"{option} is a bool, not {type(value).__name__}")
    return value


UINT32_MAX = 2**32 - 1


def tokens(option: str, value: Any, meaning_of_zero: str, most: int) -> int:
    """`value` if it is an int from 0 to `most`, the bound the protocol gives the field, else TypeError or
    ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} is a number of tokens (an int), not {type(value).__name__}")
    if not 0 <= value <= most:
        raise ValueError(f"{option} must be from 0 ({meaning_of_zero}) to {most} tokens, not {value!r}")
    return value


def whole(option: str, value: Any, low: int, high: int, kind: str, refusal: Refusal = refused) -> int:
    """`value` if it is an int from `low` to `high` (what the field's wire type, `kind`, carries), else TypeError or
    ValueError naming the option; protobuf's own says only "Value out of range: -1"."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} is an int, not {type(value).__name__}")
    if not low <= value <= high:
        article = "an" if kind[0] in "aeio" else "a"  # "a uint32", "an int32"
        raise refusal(option, f"must be from {low} to {high} ({article} {kind}), not {value!r}")
    return value


MAX_RETRIES = 4
"""Retries of a call beyond its first attempt: gRPC caps a retry policy's attempts at 5."""
UINT32_OPTIONS = ("max_tokens", "top_k", "seed", "top_logprobs", "reasoning_budget")
"""The generation options the protocol carries as uint32."""


REAL_OPTIONS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
FLAG_OPTIONS = ("logprobs", "no_prompt_cache", "parallel_tool_calls", "adaptive_thinking")


def real(option: str, value: Any) -> float:
    """`value` if it is an int or a float, else a TypeError naming the option (protobuf's names neither)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{option} is a number, not {type(value).__name__}")
    return value


def generation_values(options: Mapping[str, Any]) -> None:
    """Each number and flag among the generation options of the type its field takes, each integer (and each
    logit_bias token id) within its uint32 field, and each stop sequence a str."""
    for option in UINT32_OPTIONS:
        if option in options:
            whole(option, options[option], 0, UINT32_MAX, "uint32")
    for option in REAL_OPTIONS:
        if option in options:
            real(option, options[option])
    for option in FLAG_OPTIONS:
        if option in options:
            flag(option, options[option])
    if options.get("continue_last_message") is not None:  # None leaves it unset
        flag("continue_last_message", options["continue_last_message"])
    for token, bias in (options.get("logit_bias") or {}).items():
        whole("a logit_bias token id", token, 0, UINT32_MAX, "uint32")
        real("a logit_bias value", bias)
    stop = options.get("stop", ())
    if isinstance(stop, str):
        return
    if not isinstance(stop, Sequence):
        raise TypeError(f"stop is a str or a sequence of str, not {type(stop).__name__}")
    if odd := [sequence for sequence in stop if not isinstance(sequence, str)]:
        raise TypeError(f"stop is a str or a sequence of str, not of {type(odd[0]).__name__}")


def channel_arguments(value: Any) -> None:
    """TypeError or OptionError unless `value` is a sequence of (name, value) pairs of the types gRPC takes: gRPC
    reads them only when the channel is made, at the first call, and then as "too many values to unpack"."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"channel_options is a sequence of (name, value) pairs, not {type(value).__name__}")
    for index, entry in enumerate(value):
        if not isinstance(entry, tuple | list):  # a str of two characters would unpack as a pair
            raise TypeError(f"channel_options[{index}] is a (name, value) pair, not {type(entry).__name__}")
        if len(entry) != 2:
            raise OptionError("channel_options", f"entry {index}, {entry!r}, is not a (name, value) pair")
        name, argument = entry
        if not isinstance(name, str):
            raise TypeError(f"channel_options[{index}]'s name is a str, not {type(name).__name__}")
        # gRPC takes any other value with an __int__, a float too, for the address of a native object.
        if not isinstance(argument, int | str):
            raise TypeError(f"channel_options[{index}]'s value is an int or a str, not {type(argument).__name__}")


def client_values(options: Mapping[str, Any]) -> float | None:
    """The client's default deadline, in seconds (None: none), once the values of the Client options that gRPC would
    take without complaint and then not do what was meant are checked: one out of range is an OptionError."""
    if "tls" in options:
        flag("tls", options["tls"])
    if "max_retries" in options:
        # gRPC makes 5 attempts of a call at most, whatever its retry policy asks: a larger count would be cut.
        whole("max_retries", options["max_retries"], 0, MAX_RETRIES, "count", OptionError)
    if "channel_options" in options:
        channel_arguments(options["channel_options"])
    token = options.get("token")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token is a str, not {type(token).__name__}")
    return timeout_seconds("timeout", options.get("timeout"), OptionError)
