"""Pulls of model files onto the server: progress events, then the pulled model."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

import grpc

from warpcore.client._errors import Deadline, error_from_rpc
from warpcore.v1 import models_pb2


@dataclass(frozen=True)
class PullProgress:
    """Bytes on the server's disk so far, of `total` (None until the hub has said)."""

    done: int
    total: int | None


@dataclass(frozen=True)
class PulledModel:
    """The last event of a pull: the file is in place, checked against the hub's SHA-256, ready for load_model."""

    model: str
    size: int
    sha256: str
    """Empty when the file was already there and nothing was downloaded."""
    already_present: bool


PullEvent = PullProgress | PulledModel


def pull_request(model: str, revision: str | None) -> models_pb2.PullModelRequest:
    return models_pb2.PullModelRequest(model=model, revision=revision or "")


def pull_event(frame: models_pb2.PullModelResponse) -> PullEvent:
    if frame.HasField("progress"):
        return PullProgress(frame.progress.bytes_done, frame.progress.bytes_total or None)
    done = frame.done
    return PulledModel(done.model, done.size_bytes, done.sha256, done.already_present)


def pull_events(call: Iterable[models_pb2.PullModelResponse], deadline: Deadline | None) -> Iterator[PullEvent]:
    try:
        for frame in call:
            yield pull_event(frame)
    except grpc.RpcError as error:
        raise error_from_rpc(error, deadline) from None


async def async_pull_events(
    call: AsyncIterable[models_pb2.PullModelResponse], deadline: Deadline | None
) -> AsyncIterator[PullEvent]:
    try:
        async for frame in call:
            yield pull_event(frame)
    except grpc.RpcError as error:
        raise error_from_rpc(error, deadline) from None
