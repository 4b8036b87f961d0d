"""One generation as the event loop hands it to a model's batching thread, and as it runs there."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.grammar_sampler import Sampler
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.prompt_reuse import Start
from warpcore.server.adapters.llama.sampling import logprobs
from warpcore.server.adapters.llama.text import Emit, TokenText
from warpcore.server.core.domain import FinishReason, GenerationParams

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

    def prepare(
        self, llama: llama_cpp.Llama, vocab: llama_cpp.llama_vocab_p, vocabulary_size: int
    ) -> tuple[Sampler, TokenText] | None:
        """Its sampler and text, as it starts; None once its caller is told why it cannot start (a grammar the
        sampler refuses, or any failure: its own, never its neighbours')."""
        sampler = None
        try:
            sampler = Sampler.of(self.params, vocab, vocabulary_size, self.constraint)
            return sampler, TokenText(llama, self.prompt, self.emit, self.constraint)
        except Exception as error:  # noqa: BLE001 - the caller's stream raises it
            if sampler is not None:
                sampler.free()
            self.emit(error)
            return None


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

    def sample(self, ctx: llama_cpp.llama_context_p, row: int, vocabulary_size: int) -> FinishReason | None:
        """Sample its next token from the logits of `row` and take it into its text: why it ends there, or None."""
        token = self.sampler.sample(ctx, row)
        scored = None
        if (params := self.job.params).logprobs:
            scored = logprobs(ctx, row, vocabulary_size, token, params.top_logprobs)
        self.answer.append(token)
        reason = self.text.feed(token, scored)
        if reason is None:
            self.next_token = token
        return reason

    def passed_over(self) -> bool:
        """Whether this step leaves it out: a token to decode, and its caller too far behind to want it yet."""
        return self.next_token is not None and self.job.flow.behind()


def all_behind(running: Sequence[Running]) -> bool:
    """Whether every running generation is passed over: nothing to decode until a caller reads."""
    return bool(running) and all(sequence.passed_over() for sequence in running)
