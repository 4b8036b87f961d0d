"""Protobuf <-> domain values of model residency: keep_alive, and what ListModels reports of a loaded model."""

from __future__ import annotations

import math

from google.protobuf import timestamp_pb2

from warpcore.server.core.bounds import MAX_KEEP_ALIVE_SECONDS
from warpcore.server.core.pulls import PulledFile, PullProgress
from warpcore.server.core.residency import ResidencyReport
from warpcore.server.core.rules import require
from warpcore.v1 import models_pb2


def keep_alive(message: models_pb2.KeepAlive) -> float | None:
    """Seconds, math.inf for forever, None when unset (the server's default)."""
    policy = message.WhichOneof("policy")
    if policy == "forever":
        return math.inf if message.forever else None
    if policy == "idle":
        idle = message.idle
        require(
            0 <= idle.seconds <= MAX_KEEP_ALIVE_SECONDS and 0 <= idle.nanos < 10**9,
            "keep_alive",
            f"keep_alive.idle must be between 0 and {MAX_KEEP_ALIVE_SECONDS} seconds",
        )
        return idle.seconds + idle.nanos / 1e9
    return None


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
