"""One generation as the event loop hands it to a model's batching thread, and as it runs there."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.grammar_sampler import Sampler
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.prompt_reuse import Start
from warpcore.server.adapters.llama.text import Emit, TokenText
from warpcore.server.core.domain import GenerationParams


@dataclass(eq=False)
class Job:
    """One generation handed to the scheduler by the event loop."""

    params: GenerationParams
    prompt: PreparedPrompt
    emit: Emit
    stop: threading.Event
    constraint: Constraint | None = None
    """The grammar its output is sampled under, built before it was submitted."""


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
