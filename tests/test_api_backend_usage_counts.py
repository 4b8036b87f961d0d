"""Token counts an upstream reports, through the real SDKs against loopback servers: a count left out or null is
unknown (the result's usage is then unset: tests/test_unreported_usage.py); a negative one, one larger than the
protocol's uint32 usage fields hold, or one of another type is the upstream's malformed answer, as any event of the
wrong shape is, on both doors, never an internal error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import openai
import pytest

from tests.api_backends_support import Code, details
from tests.conftest import collect, failed_stream
from tests.embeddings import embed
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from tests.http_door import async_openai_client, load_hosted
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

UNHOLDABLE = [-5, 2**32, 5_000_000_000]


@pytest.mark.parametrize("count", UNHOLDABLE)
@pytest.mark.parametrize("which", ["prompt_tokens", "completion_tokens"])
async def test_a_count_no_usage_field_can_hold_is_a_malformed_stream(
    stub: Stub, upstream: FakeUpstream, which: str, count: int
) -> None:
    upstream.script = Script(chunks=["a", "b"], **{which: count})  # type: ignore[arg-type]
    await load(stub, upstream)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert details(error)["reason"] == "UPSTREAM_MALFORMED_STREAM"
    if which == "prompt_tokens" and not isinstance(upstream, FakeOpenAI):
        assert not frames  # message_start tells the prompt's size before any text: the status alone
        return
    # Usage comes after the text: the stream's result frame ends it.
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR
    if which == "completion_tokens":
        assert [frame.delta.text for frame in frames[:-1]] == ["a", "b"]


async def test_a_count_of_another_type_is_a_malformed_stream(stub: Stub, upstream: FakeUpstream) -> None:
    usage: dict[str, Any] = {"completion_tokens": "2"} if isinstance(upstream, FakeOpenAI) else {}
    upstream.script = Script(chunks=["a", "b"], usage_details=usage, delta_usage={"output_tokens": 2.5})  # type: ignore[dict-item]
    await load(stub, upstream)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_MALFORMED_STREAM"


async def test_null_counts_are_unknown_and_the_answer_stands(stub: Stub, upstream: FakeUpstream) -> None:
    if isinstance(upstream, FakeOpenAI):
        upstream.script = Script(chunks=["a", "b"], usage_details={"prompt_tokens": None, "completion_tokens": None})
    else:
        upstream.script = Script(
            chunks=["a", "b"], start_usage={"input_tokens": None}, delta_usage={"output_tokens": None}
        )
    await load(stub, upstream)
    deltas, result = await collect(stub.Generate(prompt()))
    assert "".join(deltas) == "ab"
    assert result.finish_reason == pb.FINISH_REASON_STOP
    assert not result.HasField("usage")


async def test_an_embeddings_count_no_usage_field_can_hold_is_malformed(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script.embedding_usage = {"prompt_tokens": -1, "total_tokens": -1}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embed(stub, ["one text"], model_id="m")
    assert raised.value.code() == Code.UNAVAILABLE
    assert details(raised.value)["reason"] == "UPSTREAM_MALFORMED"


async def test_a_token_count_no_usage_field_can_hold_is_malformed(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script = Script(prompt_tokens=2**32)
    await load(stub, anthropic_upstream)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CountTokens(pb.CountTokensRequest(request=prompt()))
    assert raised.value.code() == Code.UNAVAILABLE
    assert details(raised.value)["reason"] == "UPSTREAM_MALFORMED"


async def test_the_http_door_passes_on_no_count_that_is_no_count(doors: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], prompt_tokens=-5)
    await load_hosted(doors, upstream)
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 503
    assert "-5" not in raised.value.response.text
