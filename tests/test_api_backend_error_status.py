"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: an
upstream's error status, retry wait, request id and body mapped to the gRPC code and error details."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.api_backends_support import Code, details, prompt_too_long
from tests.conftest import collect, failed_stream
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.bounds import MAX_RETRY_AFTER

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


# Errors


STATUS_CASES = [
    (400, Code.INVALID_ARGUMENT),
    (401, Code.UNAUTHENTICATED),
    (403, Code.PERMISSION_DENIED),
    (404, Code.NOT_FOUND),
    (429, Code.RESOURCE_EXHAUSTED),
    (500, Code.UNAVAILABLE),
    (501, Code.FAILED_PRECONDITION),
    (503, Code.UNAVAILABLE),
    (529, Code.UNAVAILABLE),
]


@pytest.mark.parametrize(("status", "code"), STATUS_CASES)
async def test_upstream_status_maps_to_grpc_code(stub: Stub, upstream: FakeUpstream, status: int, code: Code) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=status, error_message=f"scripted {status}")
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == code
    assert f"HTTP {status}" in (error.details() or "")
    assert f"scripted {status}" in (error.details() or "")
    found = details(error)
    assert found["metadata"] == {
        "provider": "openai" if isinstance(upstream, FakeOpenAI) else "anthropic",
        "http_status": str(status),
        "upstream_request_id": "req_fake_123",
    }
    assert "retry_after" not in found
    assert frames == []  # failed before any text: the status alone


@pytest.mark.parametrize("header", ["x-request-id", "request-id", "x-litellm-call-id"])
@pytest.mark.parametrize("status", [200, 429])
async def test_the_request_id_under_any_header_a_peer_uses(
    stub: Stub, upstream: FakeUpstream, header: str, status: int
) -> None:
    # A LiteLLM proxy says its provider's id as request-id on its OpenAI route too, and its own call id otherwise.
    await load(stub, upstream)
    upstream.script = Script(status=status, request_id="req-peer-7", request_id_header=header)
    if status == 200:
        _, result = await collect(stub.Generate(prompt()))
        assert result.upstream_request_id == "req-peer-7"
    else:
        _, error = await failed_stream(stub.Generate(prompt()))
        assert details(error)["metadata"]["upstream_request_id"] == "req-peer-7"  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "code"), [(429, Code.RESOURCE_EXHAUSTED), (503, Code.UNAVAILABLE), (529, Code.UNAVAILABLE)]
)
async def test_retry_info_carries_the_upstreams_retry_after(
    stub: Stub, upstream: FakeUpstream, status: int, code: Code
) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=status, headers={"retry-after": "7"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == code
    assert details(error)["retry_after"] == 7.0


async def test_a_quota_used_up_is_its_own_reason_with_no_wait(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """OpenAI's 429 for a used-up account says insufficient_quota: a rate limit's status, but no wait ends it."""
    await load(stub, openai_upstream)
    # Even with a retry-after (a tester's finding: the HTTP door left it out, gRPC passed it on as RetryInfo).
    openai_upstream.script = Script(status=429, error_code="insufficient_quota", headers={"retry-after": "7"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert (error.code(), details(error)["reason"]) == (Code.RESOURCE_EXHAUSTED, "UPSTREAM_QUOTA_EXHAUSTED")
    assert "retry_after" not in details(error)
    openai_upstream.script = Script(status=429, error_code="rate_limit_exceeded")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    "refusal",
    [
        "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
        "tools param requires --jinja flag",
        "input (3002 tokens) is too large to process. increase the physical batch size",
    ],
)
async def test_a_500_that_says_what_is_not_supported_is_failed_precondition(
    stub: Stub, upstream: FakeUpstream, refusal: str
) -> None:
    """The testers' findings: llama.cpp's server answers an image it has no projector for, tools without its jinja
    templates and an embedding over its batch size with HTTP 500, which was UNAVAILABLE (retry) and the HTTP door's
    503 with Retry-After: a stock SDK sent the doomed request three times."""
    await load(stub, upstream)
    upstream.script = Script(status=500, error_message=refusal, headers={"retry-after": "1"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.FAILED_PRECONDITION
    assert refusal in (error.details() or "")
    assert "retry_after" not in details(error)
    for passing in ("the server ran out of memory", "Model requires more memory than available, retry later"):
        upstream.script = Script(status=500, error_message=passing)
        _, error = await failed_stream(stub.Generate(prompt()))
        assert error.code() == Code.UNAVAILABLE  # any other 500 may pass


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"llm_provider-retry-after": "60"}, 60.0),
        ({"llm_provider-retry-after-ms": "7500", "llm_provider-retry-after": "8"}, 7.5),
        ({"retry-after": "3", "llm_provider-retry-after": "60"}, 3.0),  # the standard header first
    ],
)
async def test_retry_info_from_what_a_litellm_proxy_passes_on(
    stub: Stub, upstream: FakeUpstream, headers: dict[str, str], wait: float
) -> None:
    """The tester's finding: behind LiteLLM, which sends only its llm_provider- forms, the wait was lost, and the HTTP
    door told clients to retry after 1 s where the upstream had said 60."""
    await load(stub, upstream)
    upstream.script = Script(status=429, headers=headers)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert details(error)["retry_after"] == wait


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "1e999", "retry-after": "5"}, 5.0),
        ({"retry-after": "99999999999999999999"}, MAX_RETRY_AFTER),
        ({"retry-after-ms": "1e308"}, MAX_RETRY_AFTER),
        ({"retry-after": "-5"}, None),  # no wait at all, not "retry at once"
        ({"retry-after-ms": "-1", "retry-after": "7"}, 7.0),
    ],
)
async def test_a_retry_after_of_no_finite_positive_or_sensible_wait_is_left_out_or_cut(
    stub: Stub, upstream: FakeUpstream, headers: dict[str, str], wait: float | None
) -> None:
    """An upstream's infinite or huge wait failed the error's own translation (UNKNOWN, an OverflowError, and the
    SDK's exception whole in the log)."""
    await load(stub, upstream)
    upstream.script = Script(status=429, headers=headers)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert details(error).get("retry_after") == wait


async def test_an_error_body_that_is_no_json_is_quoted(stub: Stub, upstream: FakeUpstream) -> None:
    """A proxy's HTML page in front of the API says what failed; OpenAI's said only "Error code: 502"."""
    await load(stub, upstream)
    upstream.script = Script(status=502, error_text="<html><h1>502 Bad Gateway</h1> nginx</html>")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert "(HTTP 502): <html><h1>502 Bad Gateway</h1> nginx</html>" in (error.details() or "")


async def test_an_error_text_reaches_the_caller_without_control_characters_or_direction_marks(
    stub: Stub, upstream: FakeUpstream
) -> None:
    """A tester's finding: NUL, a terminal's escape and a right-to-left override went to the caller and the log."""
    await load(stub, upstream)
    upstream.script = Script(status=400, error_message="odd\x00 failure\u202e at\x1b[31m line\t1\nof 2")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert (error.details() or "").endswith("(HTTP 400): odd failure at[31m line\t1\nof 2")


def says_too_long(error: grpc.aio.AioRpcError, context_size: str, upstream_words: str) -> None:
    """A refusal of a prompt over the context as a local model's says it (the words routers read, with the context's
    size where the upstream said it), the upstream's own words kept."""
    assert (error.code(), details(error)["reason"]) == (Code.INVALID_ARGUMENT, "CONTEXT_LENGTH_EXCEEDED")
    message = error.details() or ""
    assert "the prompt is too long, which exceeds the available context size" in message
    assert f"this model's maximum context length is {context_size}" in message
    assert message.endswith(f"(the upstream said: {upstream_words})")


async def test_context_length_errors_have_their_reason_and_words(stub: Stub, upstream: FakeUpstream) -> None:
    """A tester's finding: an upstream's refusal said only its own words, without those the README promises on
    every context-length refusal (OpenAI's lacked "prompt is too long" and "exceeds the available context size")."""
    await load(stub, upstream)
    upstream.script, context_size = prompt_too_long(upstream)
    _, error = await failed_stream(stub.Generate(prompt()))
    says_too_long(error, context_size, upstream.script.error_message)


# What servers other than OpenAI's and Anthropic's answer, behind either backend: llama.cpp's server (its error type,
# with no code), LiteLLM's proxy (its exception's name in the message) and vLLM (its words).
@pytest.mark.parametrize(
    ("error_type", "message", "context_size"),
    [
        (
            "exceed_context_size_error",
            "request (1524 tokens) exceeds the available context size (512 tokens), try increasing it",
            "512 tokens",
        ),
        (
            None,
            "litellm.ContextWindowExceededError: litellm.BadRequestError: the prompt is 9000 tokens",
            "less than the prompt's length",
        ),
        (None, "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens", "2048 tokens"),
    ],
)
async def test_compatible_servers_context_length_errors_have_their_reason_and_words(
    stub: Stub, upstream: FakeUpstream, error_type: str | None, message: str, context_size: str
) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=400, error_type=error_type, error_message=message)
    _, error = await failed_stream(stub.Generate(prompt()))
    says_too_long(error, context_size, message)


# llama.cpp's server puts the context's size in its body (server_task_result_error::to_json: `n_prompt_tokens` and
# `n_ctx` beside the error's type), where an older build's words carry none, and newer ones word it otherwise.
LLAMA_CPP_WORDS = "the request exceeds the available context size, try increasing it"
LLAMA_CPP_BODIES = [
    {"message": LLAMA_CPP_WORDS, "type": "exceed_context_size_error", "n_ctx": 512},
    {
        "error": {
            "code": 400,
            "message": "request (1524 tokens) exceeds context size (512 tokens)",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 1524,
            "n_ctx": 512,
        }
    },
]


@pytest.mark.parametrize("body", LLAMA_CPP_BODIES, ids=["older", "newer"])
async def test_a_llama_cpp_servers_context_size_is_read_from_its_body(
    stub: Stub, upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=400, error_body=body)
    _, error = await failed_stream(stub.Generate(prompt()))
    says_too_long(error, "512 tokens", body.get("error", body)["message"])


async def test_a_size_in_other_digits_is_not_read(stub: Stub, upstream: FakeUpstream) -> None:
    """int() reads full-width digits as ASCII ones: a size is read of ASCII digits alone."""
    await load(stub, upstream)
    words = "This model's maximum context length is \uff14\uff10\uff19\uff16 tokens. However, you requested 5000"
    upstream.script = Script(status=400, error_code="context_length_exceeded", error_message=words)
    _, error = await failed_stream(stub.Generate(prompt()))
    says_too_long(error, "less than the prompt's length", words)


async def test_a_label_is_taken_in_its_servers_member_alone(stub: Stub, upstream: FakeUpstream) -> None:
    """OpenAI's code in `type`, or llama.cpp's type in `code`, is no server's refusal of a prompt too long."""
    await load(stub, upstream)
    for inner in (
        {"type": "context_length_exceeded", "code": None},
        {"type": "x", "code": "exceed_context_size_error"},
    ):
        upstream.script = Script(status=400, error_body={"error": {"message": "bad", **inner}})
        _, error = await failed_stream(stub.Generate(prompt()))
        assert details(error)["reason"] == "UPSTREAM_INVALID_ARGUMENT"
        assert (error.details() or "").endswith("(HTTP 400): bad")


async def test_other_refusals_are_not_called_context_length(stub: Stub, upstream: FakeUpstream) -> None:
    """Only the codes and openings those servers use for a prompt too long: the words routers read, which would send
    any other refusal to a model with a larger context, are not added to a refusal that merely names the context."""
    await load(stub, upstream)
    for words in ("temperature is out of range", "context_window must be a positive integer"):
        upstream.script = Script(status=400, error_message=words)
        _, error = await failed_stream(stub.Generate(prompt()))
        assert details(error)["reason"] == "UPSTREAM_INVALID_ARGUMENT"
        assert (error.details() or "").endswith(f"(HTTP 400): {words}")
    upstream.script = Script(status=429, error_message="too many tokens for the context window this minute")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_RESOURCE_EXHAUSTED"


async def test_a_refused_load_says_the_upstreams_message_not_its_json_body(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.required_api_key = "sk-another-key-0123456789"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream)
    assert raised.value.code() == Code.UNAUTHENTICATED
    assert (raised.value.details() or "").endswith("(HTTP 401): Incorrect API key provided")
