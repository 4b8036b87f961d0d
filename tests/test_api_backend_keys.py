"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: API keys
kept out of errors, logs and request ids."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from grpc_status import rpc_status

from tests.api_backends_support import Code
from tests.conftest import failed_stream
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.hosted import api_config, backend_of, key_of, load, prompt
from tests.key_leaks import Key, Transcript, leaks
from warpcore.server.adapters.hosted.scrub import scrub_request_id
from warpcore.server.core.bounds import MAX_REQUEST_ID
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
