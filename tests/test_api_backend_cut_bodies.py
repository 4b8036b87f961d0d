"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that close the connection halfway
through an answer: an error's body, a model list, an answer not streamed, and an event of a stream. Whichever the
SDK, and wherever it reads the body, the cut is UNAVAILABLE in the same words."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import openai
import pytest

from tests.api_backends_support import Code, details
from tests.conftest import failed_stream
from tests.embeddings import embed, refusal
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts, prompt
from tests.http_door import async_openai_client
from tests.http_errors_support import anthropic_failure, openai_failure
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def provider(upstream: FakeUpstream) -> str:
    return "openai" if isinstance(upstream, FakeOpenAI) else "anthropic"


def cut(upstream: FakeUpstream, status: int | None = None) -> str:
    """What the error says of an answer cut short, after `status` when one came."""
    answered = f" (HTTP {status})" if status is not None else ""
    return (
        f"{provider(upstream)} upstream error{answered}: 127.0.0.1:{upstream.port} closed the connection before the"
        " answer was complete"
    )


@pytest.mark.parametrize("status", [401, 429, 529])
async def test_an_error_status_whose_body_is_cut_is_unavailable(
    stub: Stub, upstream: FakeUpstream, status: int
) -> None:
    """A tester's finding: the openai SDK raised httpx2's ReadError as it was, reading a 401's body (Content-Length
    500, 47 bytes sent), and the call failed INTERNAL. What the status said is kept: its number, the request id and
    the wait the upstream asked for, which the client gets as from an answer that came whole."""
    await load(stub, upstream)
    upstream.script = Script(status=status, cut_body=True, headers={"retry-after": "7"})
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert (error.code(), error.details()) == (Code.UNAVAILABLE, cut(upstream, status))
    assert details(error) == {
        "reason": "UPSTREAM_UNAVAILABLE",
        "metadata": {"provider": provider(upstream), "http_status": str(status), "upstream_request_id": "req_fake_123"},
        "retry_after": 7.0,
    }
    assert frames == []
    assert len(posts(upstream)) == 1  # answered, if not whole: not sent again as a request nothing answered is


async def test_a_model_list_cut_midway_is_unavailable(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(cut_body=True)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream)
    assert (raised.value.code(), raised.value.details()) == (Code.UNAVAILABLE, cut(upstream))


async def test_an_answer_not_streamed_cut_midway_is_unavailable(stub: Stub, upstream: FakeUpstream) -> None:
    """OpenAI's embeddings and Anthropic's token count come whole, in one JSON body."""
    await load(stub, upstream)
    upstream.script = Script(cut_body=True)
    if isinstance(upstream, FakeOpenAI):
        error = await refusal(embed(stub, ["one text"], model_id="m"))
    else:
        error = await refusal(stub.CountTokens(pb.CountTokensRequest(request=prompt())))
    assert (error.code(), error.details()) == (Code.UNAVAILABLE, cut(upstream))


async def test_a_stream_cut_inside_an_event_is_unavailable(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=["a", "b", "c"], cut_after=1, cut_inside_event=True)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert (error.code(), error.details()) == (Code.UNAVAILABLE, cut(upstream))
    assert [frame.delta.text for frame in frames[:-1]] == ["a"]
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


async def test_the_http_door_answers_a_cut_error_body_503(hosted: Doors, upstream: FakeUpstream) -> None:
    """The tester's chat, messages and responses calls were HTTP 500, with a traceback in the server's log."""
    upstream.script = Script(status=401, cut_body=True)
    for stream in (False, True):
        from_openai = await openai_failure(hosted, stream=stream)
        assert from_openai.status_code == 503
        assert cut(upstream, 401) in from_openai.message
        assert (await anthropic_failure(hosted, stream=stream)).status_code == 503
    async with async_openai_client(hosted) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.responses.create(model="m", input="Say hello")
    assert raised.value.status_code == 503
