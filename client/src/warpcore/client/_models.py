"""Plain values describing models (Model, its Capabilities and Residency), and the keep_alive a load asks for; the
translation to and from their protocol messages, shared by both clients."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from google.protobuf import duration_pb2

from warpcore._keep_alive import MAX_KEEP_ALIVE_SECONDS
from warpcore.v1 import capabilities_pb2 as capb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2

KeepAliveLike = float | timedelta | Literal["forever"]
"""How long a local model stays loaded once idle: seconds or a timedelta (0: unloaded as soon as its last generation
ends), or "forever" (math.inf too): until unloaded. None, where it is taken, leaves it to the server (--keep-alive)."""

ModelType = Literal["text_to_text", "text_to_embedding", "unspecified"]
"""What a model takes and gives (Model.type); "unspecified" only from a server that leaves it unset."""
ModelState = Literal["ready", "loading", "unloading", "available", "unspecified"]
"""Where a model stands on the server (Model.state); "unspecified" only from a server that leaves it unset."""


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can do."""

    generate: bool
    embed: bool
    count_tokens: bool
    images: bool
    logprobs: bool
    tools: bool
    documents: bool = False


@dataclass(frozen=True)
class Residency:
    """What a loaded model costs and when it goes (the protocol's ModelResidency)."""

    memory_bytes: int
    """Estimated memory of keeping it loaded: weights, KV cache and prompt cache (0 for a hosted model)."""
    slots_busy: int
    """Generations running on it now."""
    slots_total: int
    """Generations it runs at once at most."""
    queue_depth: int
    """Generations waiting for a slot."""
    last_used: datetime | None
    """When it was last loaded or last finished a generation (UTC)."""
    expires_at: datetime | None
    """When it will be unloaded if nothing uses it meanwhile (UTC); None while in use, or when kept until unloaded."""
    keep_alive: float | None
    """Seconds it stays loaded once idle (0: unloaded as soon as its last generation ends); None: until unloaded."""


@dataclass(frozen=True)
class Model:
    id: str
    backend: str
    """A Backend's value: "openai", "anthropic" or "llama_cpp" (a str, not a Literal, so that comparing it with
    Backend.OPENAI type-checks under mypy's strict equality)."""
    name: str
    type: ModelType
    """"text_to_text", or "text_to_embedding" for a model that embeds and does not generate."""
    state: ModelState
    """"ready" when loaded on the server; "loading" while it loads (a generate naming it waits for the load);
    "unloading" while unload_model waits for its running generations (new ones fail with UnavailableError, reason
    MODEL_UNLOADING; it still holds its memory); "available" when not loaded: one the server loads on first use (its
    operator's lazy models, and those unloaded for idleness, keep_alive, or for room), or one a backend offers
    (list_models with a backend)."""
    context_size: int
    capabilities: Capabilities | None = None
    """Known for loaded models."""
    residency: Residency | None = None
    """For a loaded model: its cost, use and expiry; None for one that is not loaded (and in unload_model's answer)."""
    loads_on_demand: bool = False
    """For an "available" model: True when the server loads it for the first generate naming it (its operator's
    lazy models, those unloaded for idleness or room); False for one a backend only offers, for load_model first."""


def duration_message(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def keep_alive_range() -> str:
    return f"keep_alive must be between 0 and {MAX_KEEP_ALIVE_SECONDS} seconds, or forever"


def keep_alive_message(value: KeepAliveLike | None) -> models_pb2.KeepAlive | None:
    """The KeepAlive of a load, None to leave it to the server; TypeError or ValueError for what is none of
    KeepAliveLike, or a negative or NaN time."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() == "forever":
            return models_pb2.KeepAlive(forever=True)
        raise ValueError(f'keep_alive is a number of seconds, a datetime.timedelta or "forever", not {value!r}')
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            'keep_alive is a number of seconds, a datetime.timedelta or "forever" (or None for the server\'s default),'
            f" not {type(value).__name__}"
        )
    else:
        seconds = float(value)
    if seconds == math.inf:
        return models_pb2.KeepAlive(forever=True)
    if not 0 <= seconds <= MAX_KEEP_ALIVE_SECONDS:  # NaN fails it too
        raise ValueError(f"{keep_alive_range()}, not {_shown(value)}")
    return models_pb2.KeepAlive(idle=duration_message(seconds))


def _shown(value: Any) -> str:
    return f"{value.total_seconds():.15g} s" if isinstance(value, timedelta) else repr(value)


def _when(model: models_pb2.ModelResidency, field: Literal["last_used", "expires_at"]) -> datetime | None:
    if not model.HasField(field):
        return None
    return datetime.fromtimestamp(getattr(model, field).ToNanoseconds() / 1e9, UTC)


def residency_from(model: pb.Model) -> Residency | None:
    if not model.HasField("residency"):
        return None
    found = model.residency
    return Residency(
        memory_bytes=found.memory_bytes,
        slots_busy=found.slots_busy,
        slots_total=found.slots_total,
        queue_depth=found.queue_depth,
        last_used=_when(found, "last_used"),
        expires_at=_when(found, "expires_at"),
        keep_alive=found.keep_alive.ToNanoseconds() / 1e9 if found.HasField("keep_alive") else None,
    )


def capabilities_from(model: pb.Model) -> Capabilities | None:
    if not model.HasField("capabilities"):
        return None
    found: capb.ModelCapabilities = model.capabilities
    return Capabilities(
        generate=found.generate,
        embed=found.embed,
        count_tokens=found.count_tokens,
        images=found.images,
        logprobs=found.logprobs,
        tools=found.tools,
        documents=found.documents,
    )


def model_from(message: pb.Model) -> Model:
    return Model(
        id=message.id,
        backend=pb.BackendType.Name(message.backend).removeprefix("BACKEND_TYPE_").lower(),
        name=message.name,
        type=cast(ModelType, pb.ModelType.Name(message.type).removeprefix("MODEL_TYPE_").lower()),
        state=cast(ModelState, pb.ModelState.Name(message.state).removeprefix("MODEL_STATE_").lower()),
        context_size=message.context_size,
        capabilities=capabilities_from(message),
        residency=residency_from(message),
        loads_on_demand=message.loads_on_demand,
    )
