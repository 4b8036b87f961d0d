"""One generation as the event loop hands it to a model's batching thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.text import Emit
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
