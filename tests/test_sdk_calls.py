"""The Python SDK, sync and asyncio, against the real server: round trips, streaming, sampling options, cancellation on
close, error types for server-side and upstream failures, and backend settings as keyword arguments."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.sdk_support import blocking, target
from tests.tiny_model import token_ids
from warpcore.client import (
    AlreadyExistsError,
    ApiConfig,
    AsyncClient,
    AuthenticationError,
    Backend,
    Client,
    DeadlineExceededError,
    FailedPreconditionError,
    FinishReason,
    GenerateResult,
    InvalidArgumentError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TextDelta,
    UnavailableError,
    WarpcoreError,
)

__all__ = ["target"]  # the fixture, used by name


async def test_sync_client_round_trip(target: str) -> None:
    @blocking
    def use() -> None:
        with Client(target, timeout=30) as client:
            model = client.load_model(TINY_MODEL, backend=Backend.LLAMA_CPP, model_id="tiny", context_size=512)
            assert (model.id, model.backend, model.state, model.context_size) == ("tiny", "llama_cpp", "ready", 512)
            assert [m.id for m in client.list_models()] == ["tiny"]
            assert [m.state for m in client.list_models("llama_cpp")] == ["ready", "available"]

            response = client.generate("tiny", prompt="the world", max_tokens=8, temperature=0)
            assert response.finish_reason is FinishReason.LENGTH
            assert response.usage is not None
            assert response.usage.completion_tokens == 8
            assert response.text.strip()

            with client.generate("tiny", prompt="the world", max_tokens=8, temperature=0, stream=True) as stream:
                events = list(stream)
            assert all(isinstance(event, TextDelta) for event in events[:-1])
            assert isinstance(events[-1], GenerateResult)
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == response.text

            stream = client.generate(
                "tiny", messages=[Message("user", "hi"), ("assistant", "yo"), ("user", "and?")], stream=True
            )
            pieces = list(stream.text_stream)
            final = stream.get_final_response()
            assert "".join(pieces) == final.text
            assert final.timings.time_to_first_token is not None
            assert final.timings.total >= final.timings.time_to_first_token

            assert client.health() == "SERVING"
            assert client.unload_model("tiny").id == "tiny"
            assert client.list_models() == []

    await use()


async def test_async_client_round_trip(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        response = await client.generate("tiny", prompt="people", max_tokens=6, temperature=0, stop=["zzz"])
        assert response.usage is not None
        assert response.usage.completion_tokens == 6

        stream = await client.generate("tiny", prompt="people", max_tokens=6, temperature=0, stream=True)
        async with stream:
            pieces = [piece async for piece in stream.text_stream]
        assert "".join(pieces) == response.text

        stream = await client.generate("tiny", prompt="people", max_tokens=6, temperature=0, stream=True)
        events = [event async for event in stream]
        assert isinstance(events[-1], GenerateResult)
        assert (await stream.get_final_response()).text == response.text

        stop = response.text.split()[1]
        stopped = await client.generate("tiny", prompt="people", max_tokens=6, temperature=0, stop=["zzz", stop])
        assert (stopped.finish_reason, stopped.stop_sequence) == (FinishReason.STOP_SEQUENCE, stop)
        assert response.stop_sequence == ""

        # continue_last_message continues the assistant's text (prefill) instead of answering in a turn of its own.
        chat = [("user", "hello"), ("assistant", "the world and")]
        continued = await client.generate("tiny", messages=chat, max_tokens=3, continue_last_message=True)
        after = await client.generate("tiny", messages=chat, max_tokens=3)
        # Unset, a local model answers after it, as asked with False (and as the first release did).
        asked_after = await client.generate("tiny", messages=chat, max_tokens=3, continue_last_message=False)
        assert continued.usage is not None
        assert after.usage is not None
        assert continued.usage.prompt_tokens < after.usage.prompt_tokens
        assert asked_after.usage is not None
        assert asked_after.usage.prompt_tokens == after.usage.prompt_tokens

        assert await client.health() == "SERVING"
        assert [m.id for m in await client.list_models()] == ["tiny"]
        await client.unload_model("tiny")


async def test_sampling_options_reach_the_model_from_both_clients(target: str) -> None:
    people = token_ids()[b" people"]
    async with AsyncClient(target) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        forced = await client.generate("tiny", prompt="the world", max_tokens=4, logit_bias={people: 100.0})
        plain = await client.generate("tiny", prompt="the world", max_tokens=12, temperature=0)
        penalized = await client.generate(
            "tiny", prompt="the world", max_tokens=12, temperature=0, presence_penalty=2.0, frequency_penalty=1.0
        )

    @blocking
    def use() -> tuple[str, str]:
        with Client(target) as sync:
            forced = sync.generate("tiny", prompt="the world", max_tokens=4, logit_bias={people: 100.0})
            penalized = sync.generate(
                "tiny", prompt="the world", max_tokens=12, temperature=0, presence_penalty=2.0, frequency_penalty=1.0
            )
            return forced.text, penalized.text

    assert forced.text == " people" * 4
    assert penalized.text != plain.text
    assert await use() == (forced.text, penalized.text)


async def test_close_cancels_the_generation_on_the_server(target: str) -> None:
    async with AsyncClient(target) as client:
        await client.load_model(TINY_MODEL, model_id="long", context_size=32768)
        stream = await client.generate("long", prompt="the", max_tokens=32768, temperature=0, stream=True)
        first = await anext(stream)
        assert isinstance(first, TextDelta)
        stream.close()
        # The model serves one request at a time: this finishes in time only if the cancelled one stopped.
        follow_up = await client.generate("long", prompt="the", max_tokens=4, timeout=5)
        assert follow_up.usage is not None
        assert follow_up.usage.completion_tokens == 4


async def test_sync_stream_close_cancels_too(target: str) -> None:
    @blocking
    def use() -> int:
        with Client(target) as client:
            client.load_model(TINY_MODEL, model_id="long", context_size=32768)
            with client.generate("long", prompt="the", max_tokens=32768, stream=True) as stream:
                next(stream)
            usage = client.generate("long", prompt="the", max_tokens=4, timeout=5).usage
            assert usage is not None
            return usage.completion_tokens

    assert await use() == 4


async def test_error_types_for_server_side_failures(target: str, server_env: dict[str, str]) -> None:
    async with AsyncClient(target) as client:
        with pytest.raises(NotFoundError) as not_found:
            await client.generate("ghost", prompt="x")
        assert not_found.value.reason == "MODEL_NOT_LOADED"
        assert not_found.value.status is grpc.StatusCode.NOT_FOUND

        with pytest.raises(InvalidArgumentError) as invalid:
            await client.load_model("../escape.gguf")
        assert invalid.value.field_violations.keys() == {"model"}

        await client.load_model(TINY_MODEL, model_id="tiny")
        with pytest.raises(AlreadyExistsError):
            await client.load_model(TINY_MODEL, model_id="tiny", context_size=512)
        with pytest.raises(InvalidArgumentError) as too_hot:
            await client.generate("tiny", prompt="x", temperature=5.0)
        assert "temperature" in too_hot.value.message

        with pytest.raises(DeadlineExceededError):
            await client.generate("tiny", prompt="the", max_tokens=2000, timeout=0.01)

        server_env.pop("MODELS_PATH")
        with pytest.raises(FailedPreconditionError):
            await client.load_model(TINY_MODEL, model_id="other")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthenticationError), (403, PermissionDeniedError), (429, RateLimitError), (503, UnavailableError)],
)
async def test_error_types_for_upstream_failures(target: str, status: int, error_type: type[WarpcoreError]) -> None:
    async with FakeOpenAI() as upstream, AsyncClient(target) as client:
        config = ApiConfig(api_key="sk-test-0123456789", base_url=upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="gpt", config=config)
        upstream.script = Script(status=status, headers={"retry-after": "3"})
        with pytest.raises(error_type) as raised:
            await client.generate("gpt", prompt="hi")
        assert raised.value.metadata["provider"] == "openai"
        assert raised.value.retry_after == (3.0 if status in (429, 503) else None)  # the statuses one retries


async def test_backend_settings_as_keyword_arguments(target: str) -> None:
    async with FakeOpenAI() as upstream, AsyncClient(target) as client:
        await client.load_model(
            "gpt-4o", backend="openai", model_id="gpt", api_key="sk-kw-0123456789", base_url=upstream.base_url
        )
        await client.generate("gpt", prompt="hi")
        assert upstream.requests[-1].headers["authorization"] == "Bearer sk-kw-0123456789"
        with pytest.raises(TypeError):
            await client.load_model("x", backend="openai", api_key="k", threads=2)  # API and local settings mixed
