"""One generation as the event loop hands it to a model's batching thread, and as it runs there."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.grammar_sampler import Sampler
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.prompt_reuse import Start
from warpcore.server.adapters.llama.text import Emit, TokenText
from warpcore.server.core.domain import GenerationParams

IDLE_SECONDS = 1.0
"""How long a model's batching thread waits for work before it ends (the next generation starts another): an idle
thread's OpenMP team makes libgomp stop spinning in a working model's too (native_threads.py), slowing it."""
MAX_UNREAD = 64
"""Events a generation's caller may leave unread before the batching thread passes its generation over."""
PAUSED_WAIT = 0.05
"""Seconds the batching thread waits, when every generation it runs is passed over, before it looks again."""


@dataclass(eq=False)
class Flow:
    """How far a generation's caller is behind it: the events handed to it (counted on the batching thread) and those
    it took (counted on the event loop), each written by one thread. A caller that stops reading (its client's
    connection full) leaves them unread; its generation then waits, its slot kept, rather than decode on for nobody
    up to max_tokens, a core busy meanwhile; it goes on once the caller catches up."""

    given: int = 0
    taken: int = 0

    def behind(self) -> bool:
        return self.given - self.taken > MAX_UNREAD


@dataclass(eq=False)
class Job:
    """One generation handed to the scheduler by the event loop."""

    params: GenerationParams
    prompt: PreparedPrompt
    emit: Emit
    stop: threading.Event
    constraint: Constraint | None = None
    """The grammar its output is sampled under, built before it was submitted."""
    flow: Flow = dataclasses.field(default_factory=Flow)


@dataclass(eq=False)
class Running:
    """A job in one of the scheduler's slots, with what it has decoded so far."""

    job: Job
    slot: int
    prompt: PreparedPrompt
    text: TokenText
    sampler: Sampler
    start: Start
    """The beginning of its prompt it found decoded, and what to save of it when it ends."""
    prefilled: int = 0  # prompt tokens already in the KV cache
    position: int = 0
    next_token: int | None = None  # sampled, not yet decoded
    answer: list[int] = dataclasses.field(default_factory=list)  # every token sampled

    def passed_over(self) -> bool:
        """Whether this step leaves it out: a token to decode, and its caller too far behind to want it yet."""
        return self.next_token is not None and self.job.flow.behind()


def all_behind(running: Sequence[Running]) -> bool:
    """Whether every running generation is passed over: nothing to decode until a caller reads."""
    return bool(running) and all(sequence.passed_over() for sequence in running)
