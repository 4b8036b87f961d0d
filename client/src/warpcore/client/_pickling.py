"""Exceptions that pickle whole, as a ProcessPoolExecutor's worker sends its failure back (and copy.deepcopy copies).
Python's own pickling of an exception calls its class again with the exception's args, its one message, which the
SDK's exceptions, made from their parts, do not take."""

from __future__ import annotations

from typing import Any


class PicklableError(Exception):
    """Rebuilt from its args and its attributes as they are, without calling __init__ again: the type, str() and
    everything the exception carries come back (a WarpcoreError's response too: plain frozen dataclasses)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(kind: type[PicklableError], args: tuple[Any, ...]) -> PicklableError:
    return kind.__new__(kind, *args)
