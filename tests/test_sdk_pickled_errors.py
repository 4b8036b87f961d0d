"""Every exception the SDK raises survives pickle whole, as a ProcessPoolExecutor's worker sends its failure back: its
type, its words and all it carries (status, message, reason, metadata, field violations, retry delay, request id, the
answer so far), raised by real calls against the real server and the loopback fakes."""

from __future__ import annotations

import asyncio
import copy
import multiprocessing
import pickle
from collections.abc import Awaitable
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.certificates import make_certificates
from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY
from tests.sdk_support import target
from tests.worker_support import generate_in_a_worker
from warpcore.client import (
    AlreadyExistsError,
    ApiConfig,
    AsyncClient,
    AuthenticationError,
    Client,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OptionError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    UnavailableError,
    WarpcoreError,
)

__all__ = ["target"]  # the fixture, used by name


async def raised(call: Awaitable[object]) -> WarpcoreError:
    with pytest.raises(WarpcoreError) as caught:
        await call
    return caught.value


def option_error(**options: object) -> OptionError:
    with pytest.raises(OptionError) as caught:
        Client("127.0.0.1:1", **options)  # type: ignore[arg-type]
    return caught.value


async def pull(client: AsyncClient) -> None:
    async for _ in client.pull_model("hf:owner/repo:file.gguf"):
        pass


def assert_pickles_whole(error: BaseException) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for again in (pickle.loads(pickle.dumps(error, protocol)), copy.deepcopy(error)):
            assert type(again) is type(error)
            assert (str(again), repr(again), again.args) == (str(error), repr(error), error.args)
            assert vars(again) == vars(error)  # status, message, details, request id, response; an OptionError's own


async def test_each_kind_of_failure_pickles_whole(
    target: str, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    """A tester's finding: pickle.loads raised "WarpcoreError.__init__() missing 1 required keyword-only argument:
    'status'", so a ProcessPoolExecutor whose worker failed broke (BrokenProcessPool) instead of raising the failure."""
    openai = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    anthropic = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        await client.load_model("gpt-4o-mini", backend="openai", model_id="gpt", config=openai)
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="claude", config=anthropic)
        errors = [
            await raised(client.generate("ghost", prompt="x")),
            await raised(client.load_model("../escape.gguf")),
            await raised(client.load_model(TINY_MODEL, model_id="tiny", context_size=512)),
            await raised(client.embed("tiny", "x")),
            await raised(pull(client)),
            await raised(client.generate("tiny", prompt="the", max_tokens=2000, timeout=0.01)),
        ]
        for status in (429, 401):
            openai_upstream.script = Script(status=status, headers={"retry-after": "3"})
            errors.append(await raised(client.generate("gpt", prompt="hi")))
        anthropic_upstream.script = Script(chunks=["Hel", "lo", " there"], error_event_after=2, prompt_tokens=9)
        errors.append(await raised(client.generate("claude", prompt="hi")))
        openai_upstream.script = Script(chunks=["not", " JSON"])
        errors.append(await raised(client.generate("gpt", prompt="hi", response_format="json_object")))
    assert [type(error) for error in errors] == [
        NotFoundError,
        InvalidArgumentError,
        AlreadyExistsError,
        FailedPreconditionError,
        PermissionDeniedError,
        DeadlineExceededError,
        RateLimitError,
        AuthenticationError,
        UnavailableError,
        ResponseParseError,
    ]
    # What there is to keep: details of each kind, and an answer so far.
    not_found, invalid, *_, rate_limited, _, cut, unparsed = errors
    assert (not_found.reason, not_found.request_id != "") == ("MODEL_NOT_LOADED", True)
    assert invalid.field_violations.keys() == {"model"}
    assert (rate_limited.retry_after, rate_limited.metadata["provider"]) == (3.0, "openai")
    assert cut.response is not None
    assert (cut.response.text, unparsed.response is not None) == ("Hello", True)
    refused = [option_error(max_retries=9), option_error(client_certificate=make_certificates().client_certificate)]
    assert [refusal.needs for refusal in refused] == [None, "client_key"]
    for error in [*errors, *refused]:
        assert_pickles_whole(error)


async def test_a_worker_processes_failure_comes_back_as_itself(target: str) -> None:
    # Spawned: a forked child would inherit this process's gRPC threads and its running server.
    spawning = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawning) as workers, pytest.raises(NotFoundError) as caught:
        await asyncio.wrap_future(workers.submit(generate_in_a_worker, target, "ghost"))
    assert caught.value.reason == "MODEL_NOT_LOADED"
    assert caught.value.request_id != ""
    assert str(caught.value).startswith("NOT_FOUND: ")
