"""How the SDK reads a failed call: a status whose rich details are not its own, a deadline that passed, named by the
timeout that set it, and a request over the server's largest message."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.conftest import serving
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import api_config, load
from tests.sdk_support import blocking, stalled, target
from warpcore.client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    Image,
    Message,
    MessageTooLargeError,
    RateLimitError,
)
from warpcore.server.core.bounds import MAX_IMAGES
from warpcore.server.rpc.server import ServingOptions

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

__all__ = ["stalled", "target"]  # the fixtures, used by name

SERVER_WORDS = "upstream down"


def unavailable_status() -> bytes:
    """The Status of an UNAVAILABLE with its reason, as the server sends one."""
    info = error_details_pb2.ErrorInfo(reason="UPSTREAM_UNAVAILABLE")
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=SERVER_WORDS)
    status.details.add().Pack(info)
    sent: bytes = status.SerializeToString()
    return sent


@contextlib.asynccontextmanager
async def failing_generate(trailer: bytes) -> AsyncIterator[str]:
    """A gRPC server whose Generate fails with DEADLINE_EXCEEDED, its grpc-status-details-bin trailer `trailer`: what
    a client reads when its deadline passes as the server fails the call with another status."""

    async def fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        details = (("grpc-status-details-bin", trailer),)
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, SERVER_WORDS, trailing_metadata=details)

    handler = grpc.method_handlers_generic_handler(
        "warpcore.v1.InferenceService", {"Generate": grpc.unary_stream_rpc_method_handler(fail)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def sync_generate(target: str) -> None:
    def generate() -> None:
        with Client(target) as client:
            client.generate("m", prompt="hi")

    await blocking(generate)()


async def async_generate(target: str) -> None:
    async with AsyncClient(target) as client:
        await client.generate("m", prompt="hi")


@pytest.mark.parametrize("generate", [sync_generate, async_generate], ids=["sync", "async"])
@pytest.mark.parametrize("trailer", [unavailable_status(), b"\xff no Status"], ids=["another code's", "no Status"])
async def test_a_status_whose_details_are_not_its_own_is_raised_without_them(
    generate: Callable[[str], Awaitable[None]], trailer: bytes
) -> None:
    """A tester's finding: a deadline that passed as the server failed the call raised grpc_status's ValueError
    ("Code in Status proto (StatusCode.UNAVAILABLE) doesn't match status code (StatusCode.DEADLINE_EXCEEDED)")."""
    async with failing_generate(trailer) as target:
        with pytest.raises(DeadlineExceededError) as raised:
            await generate(target)
    assert (raised.value.status, raised.value.message) == (grpc.StatusCode.DEADLINE_EXCEEDED, SERVER_WORDS)
    assert raised.value.reason == ""


async def test_a_deadline_that_passed_names_the_timeout_that_set_it(
    target: str, stalled: FakeOpenAI, stub: Stub
) -> None:
    """A tester's finding: generate(timeout=0.05) raised "DEADLINE_EXCEEDED: Stream removed (Deadline Exceeded)",
    gRPC's words, which say neither how long the deadline was nor which timeout to raise."""

    @blocking
    def past_the_calls_timeout() -> DeadlineExceededError:
        with Client(target) as client, pytest.raises(DeadlineExceededError) as raised:
            client.generate("m", prompt="hi", timeout=0.05)
        return raised.value

    called = await past_the_calls_timeout()
    assert str(called) == "DEADLINE_EXCEEDED: timed out after 0.05 s (the call's timeout)"
    assert (called.status, called.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "")
    async with AsyncClient(target, timeout=0.25) as client:
        stream = await client.generate("m", prompt="hi", stream=True)
        with pytest.raises(DeadlineExceededError) as raised:
            async for _ in stream:
                pass
        assert str(raised.value) == "DEADLINE_EXCEEDED: timed out after 0.25 s (the client's timeout)"
        # The server's own deadline (here the upstream's timeout) keeps its words, which name it.
        await client.unload_model("m")
        await load(stub, stalled, api_config(stalled, timeout={"nanos": 100_000_000}))
        with pytest.raises(DeadlineExceededError) as upstream:
            await client.generate("m", prompt="hi", timeout=30)
    assert upstream.value.message.startswith("openai upstream error:")
    assert upstream.value.reason


LARGEST_MESSAGE = 4096


async def sync_embed(target: str, text: str) -> None:
    def embed() -> None:
        with Client(target) as client:
            client.embed("m", [text])

    await blocking(embed)()


async def async_generate_stream(target: str, text: str) -> None:
    async with AsyncClient(target) as client:
        async for _ in await client.generate("m", prompt=text, stream=True):
            pass


@pytest.mark.parametrize("call", [sync_embed, async_generate_stream], ids=["sync", "async"])
async def test_a_request_over_the_servers_largest_message_is_not_raised_as_a_rate_limit(
    server_env: Mapping[str, str], call: Callable[[str, str], Awaitable[None]]
) -> None:
    """A tester's finding: a request over the server's --max-message-bytes raised RateLimitError, which invites a
    retry, where gRPC itself had refused it ("Received message larger than max (5242901 vs. 4194304)"): no retry of
    the same request can pass."""
    async with serving(server_env, ServingOptions(max_message_bytes=LARGEST_MESSAGE)) as server:
        with pytest.raises(MessageTooLargeError) as raised:
            await call(f"127.0.0.1:{server.port}", "x" * LARGEST_MESSAGE)
    assert not isinstance(raised.value, RateLimitError)
    assert raised.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Received message larger than max (" in raised.value.message  # gRPC's words
    assert raised.value.reason == ""


async def test_a_call_over_the_servers_limit_on_images_is_not_raised_as_a_rate_limit(
    server_env: Mapping[str, str],
) -> None:
    """The server's own RESOURCE_EXHAUSTED for a call that holds too much (TOO_MANY_IMAGES, IMAGE_TOO_LARGE, ...)
    was a RateLimitError too: no wait ends it either."""
    images = [Image.from_url("https://images.example/cat.png")] * (MAX_IMAGES + 1)
    async with serving(server_env) as server, AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(MessageTooLargeError) as raised:
            await client.generate("m", messages=[Message("user", parts=("Look", *images))])
    assert (raised.value.status, raised.value.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_IMAGES")
