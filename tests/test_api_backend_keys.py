"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: API keys
kept out of errors, logs, request ids, tool-call ids and error types."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest
from grpc_status import rpc_status

from tests.api_backends_support import Code
from tests.conftest import failed_stream
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import api_config, backend_of, key_of, load, posts, prompt, use
from tests.key_leaks import Key, Transcript, leaks
from tests.tool_wire import Args, Call, chat, stream, user
from warpcore.server.adapters.hosted.scrub import scrub_request_id, scrubbed_call
from warpcore.server.core.bounds import MAX_REQUEST_ID
from warpcore.server.core.domain import ToolCallDelta
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_api_keys_never_leak_into_errors_or_logs(
    stub: Stub, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = key_of(upstream)
    await load(stub, upstream)
    upstream.script = Script(status=401, error_message=f"Incorrect API key provided: {key}")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAUTHENTICATED
    assert key not in (error.details() or "")
    assert "[redacted]" in (error.details() or "")
    assert key not in str(rpc_status.from_call(error))
    upstream.script = Script()
    listed = await stub.ListModels(
        pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    )
    assert key not in str(listed)
    assert caplog.records  # the SDKs and the server did log
    assert key not in caplog.text


# A key not shaped like any vendor's, so only the server's knowledge of the exact key can scrub it.
ECHOED_KEY = Key("ApiConfig.api_key", "", "EchoedKey5Tq8Wm3Zr7Lx2Vb9Nh4Kc6Pj1Df")


@pytest.mark.parametrize("status", [200, 500, 401])
async def test_request_ids_echoing_the_key_are_scrubbed(stub: Stub, upstream: FakeUpstream, status: int) -> None:
    await load(stub, upstream, api_config(upstream, api_key=ECHOED_KEY.value))
    # Control characters inside the key do not hide it: they are dropped before the scrubbing.
    upstream.script = Script(status=status, request_id=f"req_{ECHOED_KEY.value[:10]}\t{ECHOED_KEY.value[10:]}")
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(prompt()))
    assert transcript.outcomes == {"generate": {200: "OK", 500: "UNAVAILABLE", 401: "UNAUTHENTICATED"}[status]}
    assert leaks(transcript.texts, ECHOED_KEY) == []
    sent = transcript.joined("generate")
    assert ('upstream_request_id: "req_[redacted]"' if status == 200 else '"req_[redacted]"') in sent


def test_request_id_is_a_bounded_printable_token() -> None:
    key = ECHOED_KEY.value
    assert scrub_request_id("req_011CSHm9fWgjqY3uKJnzxZ5e", key) == "req_011CSHm9fWgjqY3uKJnzxZ5e"
    assert scrub_request_id("req_1\x1b[2J\r\nforged log line\x00", key) == "req_1[2Jforgedlogline"
    assert scrub_request_id(f"{key[:4]}\x7f{key[4:]}", key) == "[redacted]"  # the key, a control character in it
    assert scrub_request_id("r" * 10_000, key) == "r" * MAX_REQUEST_ID
    assert scrub_request_id("\t\u00e9\u200b", key) == scrub_request_id(None, key) == ""


async def test_tool_call_ids_echoing_the_key_are_scrubbed_alike_in_deltas_and_result(
    stub: Stub, upstream: FakeUpstream
) -> None:
    """A tester's finding: an upstream's call id made of the key (`call_<key>`, `toolu_<key>`) reached the caller as
    it was. The id comes back with the call's result, so the deltas and the result must say the same one, and the
    loop go on with it."""
    await load(stub, upstream, api_config(upstream, api_key=ECHOED_KEY.value))
    use(upstream, [Call(0, f"call_{ECHOED_KEY.value}", "get_weather"), Args(0, '{"city": "Paris"}')])
    question = user("Weather in Paris?")
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(chat(question)))
    assert transcript.outcomes == {"generate": "OK"}
    assert leaks(transcript.texts, ECHOED_KEY) == []

    first = await stream(stub.Generate(chat(question)))
    assert first.result is not None
    assert [call.id for call in first.calls if call.id] == ["call_[redacted]"]
    assert [call.id for call in first.result.tool_calls] == ["call_[redacted]"]
    upstream.script = Script(chunks=["Sunny."])
    assistant = pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=first.result.tool_calls)
    result = pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_[redacted]", content="18 °C")
    second = await stream(stub.Generate(chat(question, assistant, result)))
    assert second.text == "Sunny."
    sent = posts(upstream)[-1]["messages"][1:]
    if isinstance(upstream, FakeOpenAI):
        assert [sent[0]["tool_calls"][0]["id"], sent[1]["tool_call_id"]] == ["call_[redacted]"] * 2
    else:
        assert [sent[0]["content"][0]["id"], sent[1]["content"][0]["tool_use_id"]] == ["call_[redacted]"] * 2


async def test_an_error_events_type_echoing_the_key_is_scrubbed(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    """The type of an `error` event in an Anthropic stream is the upstream's too, and goes into the error's message
    and its metadata (`upstream_error_type`)."""
    await load(stub, anthropic_upstream, api_config(anthropic_upstream, api_key=ECHOED_KEY.value))
    error = {"type": "error", "error": {"type": f"e_{ECHOED_KEY.value}", "message": "overloaded"}}
    anthropic_upstream.script = Script(events=[error])
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(prompt()))
    assert transcript.outcomes == {"generate": "UNAVAILABLE"}
    assert leaks(transcript.texts, ECHOED_KEY) == []
    assert "e_[redacted]" in transcript.joined("generate")


def test_a_call_delta_has_its_id_scrubbed_and_nothing_else() -> None:
    key = ECHOED_KEY.value
    assert scrubbed_call(ToolCallDelta(0, id="toolu_01AbC", name="f"), key) == ToolCallDelta(0, "toolu_01AbC", "f")
    # A control character inside the key does not hide it; the arguments are the model's words, passed as they are.
    echoed = ToolCallDelta(1, id=f"call_{key[:5]}\x1b{key[5:].upper()}", arguments=f'{{"a": "{key}"}}')
    assert scrubbed_call(echoed, key) == ToolCallDelta(1, "call_[redacted]", arguments=f'{{"a": "{key}"}}')


@pytest.mark.parametrize(
    ("asked", "named", "told"),
    [
        ([], f"s_{ECHOED_KEY.value}", "s_[redacted]"),
        # A sequence the request gave passes as it is, though shaped like a key: it is the caller's own.
        (["key-takeaways:"], "key-takeaways:", "key-takeaways:"),
    ],
)
async def test_a_stop_sequence_the_upstream_names_is_scrubbed_unless_the_request_gave_it(
    stub: Stub, anthropic_upstream: FakeAnthropic, asked: list[str], named: str, told: str
) -> None:
    await load(stub, anthropic_upstream, api_config(anthropic_upstream, api_key=ECHOED_KEY.value))
    anthropic_upstream.script = Script(finish_reason="stop_sequence", stop_sequence=named)
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(prompt(stop_sequences=asked)))
    assert leaks(transcript.texts, ECHOED_KEY) == []
    assert f"stop_sequence: {json.dumps(told)}" in transcript.joined("generate")
