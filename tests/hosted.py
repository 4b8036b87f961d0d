"""Helpers for tests against the hosted backends: a fake upstream's backend, key and config; load and prompt; the
request bodies it received (`posts`) and its scripted steps (`use`).

The fixtures that start the fakes (`openai_upstream`, `anthropic_upstream`, and `upstream`, once per provider)
are in tests/conftest.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.tool_wire import script_steps
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"


def backend_of(upstream: FakeUpstream) -> pb.BackendType.ValueType:
    return pb.BACKEND_TYPE_OPENAI if isinstance(upstream, FakeOpenAI) else pb.BACKEND_TYPE_ANTHROPIC


def key_of(upstream: FakeUpstream) -> str:
    return OPENAI_KEY if isinstance(upstream, FakeOpenAI) else ANTHROPIC_KEY


def api_config(upstream: FakeUpstream, **fields: object) -> pb.BackendConfig:
    fields.setdefault("api_key", key_of(upstream))
    fields.setdefault("base_url", upstream.base_url)
    return pb.BackendConfig(api=pb.ApiConfig(**fields))  # type: ignore[arg-type]


async def load(
    stub: Stub, upstream: FakeUpstream, config: pb.BackendConfig | None = None, model: str | None = None
) -> pb.Model:
    """The upstream's first model (or `model`) loaded as "m", with its key and base URL in the request."""
    request = pb.LoadModelRequest(
        backend=backend_of(upstream),
        model=model or upstream.models[0],
        model_id="m",
        backend_config=config if config is not None else api_config(upstream),
    )
    return (await stub.LoadModel(request)).model


def prompt(text: str = "Say hello", **options: object) -> pb.GenerateRequest:
    """A Generate request to the model `load` loads."""
    return pb.GenerateRequest(model_id="m", prompt=text, options=pb.GenerationOptions(**options))  # type: ignore[arg-type]


def posts(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """The bodies of the generation requests the upstream received."""
    return [r.body for r in upstream.requests if r.method == "POST" and r.body is not None]


def use(upstream: FakeUpstream, steps: list[Any], **fields: Any) -> None:
    events, reason = script_steps(upstream, steps)
    upstream.script = Script(events=events, finish_reason=reason, **fields)
