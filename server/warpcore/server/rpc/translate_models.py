"""Protobuf <-> domain values of models: the backend, keep_alive and the other Durations a request gives, and what
LoadModel, UnloadModel and ListModels report of a model (its type, state, capabilities and residency)."""

from __future__ import annotations

import math

from google.protobuf import duration_pb2, timestamp_pb2

from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.pulls import PulledFile, PullProgress
from warpcore.server.core.registry import LoadedModel
from warpcore.server.core.residency import ResidencyReport
from warpcore.server.core.rules import require
from warpcore.server.rpc.translate_extras import capabilities_message
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2


def keep_alive(message: models_pb2.KeepAlive) -> float | None:
    """Seconds, math.inf for forever, None when unset (the server's default)."""
    policy = message.WhichOneof("policy")
    if policy == "forever":
        return math.inf if message.forever else None
    if policy == "idle":
        return duration_seconds(message.idle, "keep_alive.idle")
    return None


def duration_seconds(duration: duration_pb2.Duration, field: str) -> float:
    """A request's Duration in seconds, refused when it is none as google.protobuf.Duration defines it (read as a
    number of nanoseconds, {seconds: 1, nanos: -1} would pass a range as another value than it says). `field` is the
    domain's name of it; the range is the domain's to check (core/validation.py, core/settings_rules.py)."""
    require(
        abs(duration.nanos) < 10**9 and duration.seconds * duration.nanos >= 0,
        field,
        f"{field} is not a valid Duration: nanos must be under a second and not of the other sign than seconds",
    )
    return duration.ToNanoseconds() / 1e9


def residency_message(report: ResidencyReport) -> models_pb2.ModelResidency:
    message = models_pb2.ModelResidency(
        memory_bytes=report.memory_bytes,
        slots_busy=report.slots_busy,
        slots_total=report.slots_total,
        queue_depth=report.queue_depth,
        last_used=_timestamp(report.last_used),
    )
    if report.expires_at is not None:
        message.expires_at.CopyFrom(_timestamp(report.expires_at))
    if not math.isinf(report.keep_alive):
        message.keep_alive.FromNanoseconds(round(report.keep_alive * 1e9))
    return message


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromNanoseconds(round(seconds * 1e9))
    return timestamp


def pull_frame(frame: PullProgress | PulledFile) -> models_pb2.PullModelResponse:
    if isinstance(frame, PullProgress):
        return models_pb2.PullModelResponse(
            progress=models_pb2.PullProgress(bytes_done=frame.done, bytes_total=frame.total or 0)
        )
    return models_pb2.PullModelResponse(
        done=models_pb2.PulledModel(
            model=frame.model, size_bytes=frame.size, sha256=frame.sha256 or "", already_present=frame.already_present
        )
    )


_BACKENDS = {
    pb.BACKEND_TYPE_OPENAI: BackendKind.OPENAI,
    pb.BACKEND_TYPE_ANTHROPIC: BackendKind.ANTHROPIC,
    pb.BACKEND_TYPE_LLAMA_CPP: BackendKind.LLAMA_CPP,
}
_BACKEND_TYPES = {kind: backend_type for backend_type, kind in _BACKENDS.items()}


def backend_kind(value: int, also: tuple[str, ...] = ()) -> BackendKind:
    """The backend a request names; `also`: the other values the request takes, named before the backends."""
    if value not in _BACKENDS:
        names = ", ".join([*also, *(pb.BackendType.Name(backend_type) for backend_type in _BACKENDS)])
        raise InvalidArgumentError(f"backend must be one of {names}", field="backend")
    return _BACKENDS[value]  # type: ignore[index]


def listed_backend(value: int) -> BackendKind | None:
    """The backend ListModels asks; None (BACKEND_TYPE_UNSPECIFIED): every backend's models."""
    if value == pb.BACKEND_TYPE_UNSPECIFIED:
        return None
    return backend_kind(value, also=("BACKEND_TYPE_UNSPECIFIED (every backend)",))


def model_message(
    model: LoadedModel, report: ResidencyReport | None = None, state: pb.ModelState.ValueType = pb.MODEL_STATE_READY
) -> pb.Model:
    """A loaded model: READY, or UNLOADING until its running generations end and its memory is freed."""
    return pb.Model(
        id=model.id,
        backend=_BACKEND_TYPES[model.backend],
        name=model.name,
        type=_model_type(model.info.capabilities),
        state=state,
        context_size=model.info.context_size,
        capabilities=capabilities_message(model.info.capabilities),
        residency=residency_message(report) if report is not None else None,
    )


def _model_type(capabilities: Capabilities) -> pb.ModelType.ValueType:
    embeds_only = capabilities.embed and not capabilities.generate
    return pb.MODEL_TYPE_TEXT_TO_EMBEDDING if embeds_only else pb.MODEL_TYPE_TEXT_TO_TEXT


def available_model_message(
    backend: BackendKind, name: str, model_id: str | None = None, embedding: bool | None = None
) -> pb.Model:
    """A model not loaded, of the type a LoadModel of it would report (`embedding`: as its settings say)."""
    return pb.Model(
        id=model_id or name,
        backend=_BACKEND_TYPES[backend],
        name=name,
        type=pb.MODEL_TYPE_TEXT_TO_EMBEDDING if backend.embeds(name, embedding) else pb.MODEL_TYPE_TEXT_TO_TEXT,
        state=pb.MODEL_STATE_AVAILABLE,
    )


def dormant_model_message(spec: LoadSpec, loaded_context_size: int = 0, *, loads_on_demand: bool = True) -> pb.Model:
    """A model known but not loaded (unloaded while idle, or declared), which a Generate loads, with the context
    size it is loaded with: its spec's, else the one it had when last loaded (0 for a declared model that never
    was). `loads_on_demand` False: one just forgotten (UnloadModel's answer), or being loaded."""
    embedding = spec.settings.embedding if spec.settings is not None else None
    model = available_model_message(spec.backend, spec.name, spec.model_id, embedding)
    model.context_size = spec.context_size or loaded_context_size
    model.loads_on_demand = loads_on_demand
    return model


def loading_model_message(spec: LoadSpec) -> pb.Model:
    """A model being loaded: what its spec says, until its load tells the rest."""
    model = dormant_model_message(spec, loads_on_demand=False)
    model.state = pb.MODEL_STATE_LOADING
    return model
