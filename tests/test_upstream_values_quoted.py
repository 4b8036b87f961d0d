"""Values an upstream chose, quoted in the errors that refuse them, scrubbed of the key as its error text is: a tool
call's name and id (an outside tester's finding: an upstream that named a tool after its Authorization header got the
key quoted back, `it calls the tool 'fn_Bearer_sk-...', which the request did not declare`), over gRPC and both
dialects of the HTTP door."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import api_config, load, use
from tests.http_errors_support import anthropic_failure, openai_failure
from tests.key_leaks import Key, Transcript, leaks
from tests.tool_wire import Args, Call, Step, chat, user
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.doors import Doors

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

# Not shaped like any vendor's key, so only the server's knowledge of the exact key can scrub it.
KEY = Key("ApiConfig.api_key", "", "QuotedKey8Rw2Tm6Zx4Lq9Vc3Nb7Hs5Pj1Gd")
BROKEN_CALLS: dict[str, tuple[list[Step], str]] = {
    # The tester's upstream: the Authorization header it got, spaces as underscores.
    "named after the key": ([Call(0, "call_1", f"fn_Bearer_{KEY.value}")], "'fn_Bearer_[redacted]'"),
    # A name no tool may have is not quoted, so that no cut or escape of it hides the key from the scrubbing.
    "key after 250 characters": (
        [Call(0, "call_1", "f" * 250 + KEY.value)],
        f"it calls a tool by a name of {250 + len(KEY.value)} characters that no tool may have",
    ),
    "key split by a control character": (
        [Call(0, "call_1", f"fn_{KEY.value[:6]}\x1b{KEY.value[6:]}")],
        f"it calls a tool by a name of {4 + len(KEY.value)} characters that no tool may have",
    ),
    "id of an earlier call": (
        [Call(0, f"call_{KEY.value}", "get_weather"), Args(0, "{}"), Call(1, f"call_{KEY.value}", "get_weather")],
        "it has the id 'call_[redacted]' of tool call 0",
    ),
}


@pytest.mark.parametrize(("steps", "told"), BROKEN_CALLS.values(), ids=BROKEN_CALLS)
async def test_a_broken_calls_values_are_scrubbed_from_its_refusal(
    stub: Stub, upstream: FakeUpstream, steps: list[Step], told: str
) -> None:
    await load(stub, upstream, api_config(upstream, api_key=KEY.value))
    use(upstream, steps)
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(chat(user("Weather?"))))
    assert transcript.outcomes == {"generate": "UNAVAILABLE"}
    assert leaks(transcript.texts, KEY) == []
    assert told in transcript.joined("generate")


async def test_a_tool_named_after_the_key_is_scrubbed_at_the_http_door(doors: Doors, upstream: FakeUpstream) -> None:
    backend = BackendKind.OPENAI if isinstance(upstream, FakeOpenAI) else BackendKind.ANTHROPIC
    settings = ApiSettings(api_key=KEY.value, base_url=upstream.base_url)
    await doors.engine.load(LoadSpec("m", backend, upstream.models[0], settings, None))
    use(upstream, [Call(0, "call_1", f"fn_Bearer_{KEY.value}")])
    schema = {"type": "object", "properties": {}}
    function = {"type": "function", "function": {"name": "get_weather", "parameters": schema}}
    from_openai = await openai_failure(doors, tools=[function])
    from_anthropic = await anthropic_failure(doors, tools=[{"name": "get_weather", "input_schema": schema}])
    for failure in (from_openai, from_anthropic):
        assert leaks([("message", failure.message), ("body", failure.response.text)], KEY) == []
        assert "'fn_Bearer_[redacted]', which the request did not declare" in failure.message


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode], ids=["standard", "url-safe"])
@pytest.mark.parametrize("before", ["Bearer ", "", "x", "xy"])
async def test_an_upstream_quoting_the_key_in_base64_has_it_scrubbed(
    stub: Stub, upstream: FakeUpstream, encode: Callable[[bytes], bytes], before: str
) -> None:
    """An outside tester's finding: a 401 whose message held the base64 of the Authorization header it got, `Bearer`
    and the key, reached the caller as it was. The key starts at any of the three places of a base64 group."""
    await load(stub, upstream, api_config(upstream, api_key=KEY.value))
    quoted = encode(f"{before}{KEY.value}\n".encode()).decode()
    upstream.script = Script(status=401, error_message=f"bad credentials <{quoted}>")
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(chat(user("Hi"))))
    assert transcript.outcomes == {"generate": "UNAUTHENTICATED"}
    said = transcript.joined("generate")
    assert "bad credentials <" in said
    # All of the key's characters gone but the few that share a byte with what was around it.
    kept = re.search(r"bad credentials <([^>]*)>", said)
    assert kept is not None
    assert "[redacted]" in kept.group(1)
    assert len(kept.group(1).replace("[redacted]", "")) <= len(quoted) - len(KEY.value) * 4 // 3 + 4
