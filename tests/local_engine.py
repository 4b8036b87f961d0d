"""The core Engine over the real registry and the real llama.cpp adapter, for tests that speak domain types (the
protocol fields for tools and response formats are translated elsewhere)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import TINY_MODEL
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.core.domain import (
    BackendKind,
    GenerationParams,
    LoadSpec,
    LocalSettings,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.engine import Engine, GenerationResult
from warpcore.server.core.limits import Limits
from warpcore.server.core.metrics import Metrics
from warpcore.server.core.policy import ApiOverridePolicy
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.core.tooling import (
    ResponseFormat,
    ResponseFormatKind,
)


@contextlib.asynccontextmanager
async def local_engine(models_path: Path) -> AsyncIterator[Engine]:
    registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models_path)}))
    limits = Limits()
    try:
        yield Engine(registry, limits, Metrics(limits), ApiOverridePolicy())
    finally:
        await registry.close()


async def load_local(
    engine: Engine,
    model_id: str,
    *,
    name: str = TINY_MODEL,
    parallel: int = 1,
    context_size: int = 1024,
    **settings: Any,
) -> str:
    spec = LoadSpec(model_id, BackendKind.LLAMA_CPP, name, LocalSettings(parallel=parallel, **settings), context_size)
    return (await engine.load(spec)).id


@dataclass
class Outcome:
    text: str
    deltas: list[ToolCallDelta] = field(default_factory=list)
    result: GenerationResult | None = None


async def run(engine: Engine, model_id: str, params: GenerationParams) -> Outcome:
    outcome = Outcome("")
    async for event in engine.generate(model_id, params):
        assert outcome.result is None, "an event after the result"
        if isinstance(event, TextChunk):
            outcome.text += event.text
        elif isinstance(event, ToolCallDelta):
            outcome.deltas.append(event)
        elif isinstance(event, GenerationResult):
            outcome.result = event
    assert outcome.result is not None
    return outcome


def json_params(schema: Mapping[str, Any] | None, *, prompt: str = "the world", **options: Any) -> GenerationParams:
    """A generation whose output must be JSON: valid against `schema`, or any object when it is None."""
    kind = ResponseFormatKind.JSON_OBJECT if schema is None else ResponseFormatKind.JSON_SCHEMA
    options.setdefault("max_tokens", 400)
    return GenerationParams(
        prompt=prompt,
        messages=(),
        response_format=ResponseFormat(kind, schema, name="answer" if schema is not None else ""),
        **options,
    )
