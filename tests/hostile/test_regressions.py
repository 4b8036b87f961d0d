"""Server bugs the properties found, as regression tests: undecodable bytes, malformed API settings, long prompts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_MODEL, assert_healthy, collect, failed_stream, greedy, rich_details
from tests.fakes.base import FakeUpstream
from tests.hostile import CALL_TIMEOUT, CONTEXT_SIZE, HEALTH_ID, HYPOTHESIS, OPENAI_KEY, SERVICE, Code
from tests.hostile.checks import check_failure, unary_outcome
from tests.hostile.strategies import TOKEN
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


Backend: TypeAlias = pb.BackendType.ValueType


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: tag, varint length, bytes."""
    length, size = b"", len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([number << 3 | 2]) + length + payload


# (method, response type, path of field numbers to a string field, a valid request to append it to)
STRING_FIELDS: list[tuple[str, type[Any], tuple[int, ...], bytes]] = [
    ("UnloadModel", pb.UnloadModelResponse, (1,), b""),
    (
        "LoadModel",
        pb.LoadModelResponse,
        (2,),
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP).SerializeToString(),
    ),
    (
        "LoadModel",
        pb.LoadModelResponse,
        (3,),
        pb.LoadModelRequest(model=TINY_MODEL, backend=pb.BACKEND_TYPE_LLAMA_CPP).SerializeToString(),
    ),
    (
        "LoadModel",
        pb.LoadModelResponse,
        (5, 1, 1),
        pb.LoadModelRequest(model="gpt-4o-mini", backend=pb.BACKEND_TYPE_OPENAI).SerializeToString(),
    ),
    (
        "LoadModel",
        pb.LoadModelResponse,
        (5, 2, 4, 4),
        pb.LoadModelRequest(model=TINY_MODEL, backend=pb.BACKEND_TYPE_LLAMA_CPP).SerializeToString(),
    ),
    (
        "ListModels",
        pb.ListModelsResponse,
        (2, 1, 3),
        pb.ListModelsRequest(backend=pb.BACKEND_TYPE_OPENAI).SerializeToString(),
    ),
    ("Generate", pb.GenerateResponse, (1,), pb.GenerateRequest(prompt="x").SerializeToString()),
    ("Generate", pb.GenerateResponse, (2,), pb.GenerateRequest(model_id=HEALTH_ID).SerializeToString()),
    ("Generate", pb.GenerateResponse, (3, 2), pb.GenerateRequest(model_id=HEALTH_ID).SerializeToString()),
    ("Generate", pb.GenerateResponse, (4, 5), pb.GenerateRequest(model_id=HEALTH_ID, prompt="x").SerializeToString()),
    ("Generate", pb.GenerateResponse, (4, 6), pb.GenerateRequest(model_id=HEALTH_ID, prompt="x").SerializeToString()),
]


async def _drain(call: grpc.aio.UnaryStreamCall[bytes, Any]) -> None:
    """Read a stream to its end."""
    async for _ in call:
        pass


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


INVALID_UTF8 = st.one_of(
    st.sampled_from([b"\xff", b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"tiny\xfe"]),
    st.binary(min_size=1, max_size=16).filter(_invalid_utf8),
)
# Wire-format damage appended to a valid request: a truncated length-delimited field, an unterminated varint tag.
CORRUPT_WIRE = st.sampled_from([b"\x0a\xff\x7f", b"\xff\xff\xff\xff", b"\x12\x05abc"])


@settings(HYPOTHESIS, max_examples=25)
@given(target=st.sampled_from(STRING_FIELDS), bad=INVALID_UTF8, corrupt=st.one_of(st.none(), CORRUPT_WIRE))
async def test_undecodable_request_bytes_are_invalid_argument(
    stub: Stub,
    server: WarpcoreServer,
    health_model: str,
    target: tuple[str, type[Any], tuple[int, ...], bytes],
    bad: bytes,
    corrupt: bytes | None,
) -> None:
    method, response_type, path, valid = target
    if corrupt is None:  # the invalid UTF-8 nested in its messages; later fields merge into earlier ones
        appended = bad
        for number in reversed(path):
            appended = _field(number, appended)
    else:
        appended = corrupt
    raw = valid + appended
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        error: grpc.aio.AioRpcError | None
        if method == "Generate":
            stream = channel.unary_stream(
                SERVICE + method, request_serializer=lambda data: data, response_deserializer=response_type.FromString
            )
            error = await unary_outcome(_drain(stream(raw, timeout=CALL_TIMEOUT)))
        else:
            unary = channel.unary_unary(
                SERVICE + method, request_serializer=lambda data: data, response_deserializer=response_type.FromString
            )
            error = await unary_outcome(unary(raw, timeout=CALL_TIMEOUT))
    assert error is not None
    check_failure(error, {Code.INVALID_ARGUMENT})
    # The hint fits the damage: only a bad string is told to be UTF-8.
    hint = "strings must be valid UTF-8" if corrupt is None else "send the bytes of this method's request message"
    assert hint in (error.details() or "")
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


MALFORMED_BASE_URLS = st.one_of(
    st.builds("http://127.0.0.1:{}/v1".format, st.integers(65536, 10**12)),  # port out of range
    st.builds("http://127.0.0.1:{}/".format, st.text(alphabet="abcxyz.-", min_size=1, max_size=6)),  # port not a number
    st.builds("http://127.0.0.1{}/".format, st.characters(max_codepoint=0x1F)),  # a control character
    st.builds("http://[{}]/".format, st.text(alphabet="ghijklmnz", min_size=1, max_size=8)),  # not an IPv6 address
    st.builds("http://{}.invalid/".format, st.sampled_from(["\u2603", "\u2764", "\U0001f600", "a\u200db"])),  # IDNA
)


@settings(HYPOTHESIS, max_examples=25)
@given(
    base_url=MALFORMED_BASE_URLS,
    backend=st.sampled_from([pb.BACKEND_TYPE_OPENAI, pb.BACKEND_TYPE_ANTHROPIC]),
    listing=st.booleans(),
)
@example(base_url="http://[::1", backend=pb.BACKEND_TYPE_OPENAI, listing=False)
async def test_malformed_base_url_is_invalid_argument(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], base_url: str, backend: Backend, listing: bool
) -> None:
    config = pb.BackendConfig(api=pb.ApiConfig(api_key="sk-some-key", base_url=base_url))
    if listing:
        listing_request = pb.ListModelsRequest(backend=backend, backend_config=config)
        error = await unary_outcome(stub.ListModels(listing_request, timeout=CALL_TIMEOUT))
    else:
        request = pb.LoadModelRequest(
            backend=backend,
            model=upstreams[backend].models[0],
            model_id="malformed-base-url",
            backend_config=config,
        )
        error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
    assert error is not None
    check_failure(error, {Code.INVALID_ARGUMENT})
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


HEADER_UNSAFE = st.builds(
    lambda head, bad, tail: head + bad + tail,
    TOKEN,
    st.one_of(
        st.sampled_from(["\n", "\r\n", "\x00", "\x7f", "\u00e9", "\u043a", "\U0001f511"]), st.characters(codec="utf-8")
    ),
    TOKEN,
).filter(lambda value: not all(0x20 <= ord(char) < 0x7F for char in value))


@settings(HYPOTHESIS, max_examples=25)
@given(
    value=HEADER_UNSAFE,
    backend=st.sampled_from([pb.BACKEND_TYPE_OPENAI, pb.BACKEND_TYPE_ANTHROPIC]),
    organization=st.booleans(),
    listing=st.booleans(),
)
@example(value="sk-\u043a\u043b\u044e\u0447", backend=pb.BACKEND_TYPE_ANTHROPIC, organization=False, listing=False)
@example(value="sk-a\nb", backend=pb.BACKEND_TYPE_OPENAI, organization=False, listing=False)
async def test_header_unsafe_api_settings_are_invalid_argument(
    stub: Stub,
    health_model: str,
    upstreams: dict[int, FakeUpstream],
    value: str,
    backend: Backend,
    organization: bool,
    listing: bool,
) -> None:
    fake = upstreams[backend]
    api = pb.ApiConfig(api_key=OPENAI_KEY, base_url=fake.base_url)
    if organization:
        api.organization = value
    else:
        api.api_key = value
    config = pb.BackendConfig(api=api)
    if listing:
        listing_request = pb.ListModelsRequest(backend=backend, backend_config=config)
        error = await unary_outcome(stub.ListModels(listing_request, timeout=CALL_TIMEOUT))
    else:
        request = pb.LoadModelRequest(
            backend=backend,
            model=fake.models[0],
            model_id="header-unsafe",
            backend_config=config,
        )
        error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
    if error is None:  # Anthropic has no organization: ignoring it is fine
        if not listing:
            await stub.UnloadModel(pb.UnloadModelRequest(model_id="header-unsafe"), timeout=CALL_TIMEOUT)
    else:
        check_failure(error, {Code.INVALID_ARGUMENT})
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


@settings(HYPOTHESIS, max_examples=10)
@given(words=st.integers(CONTEXT_SIZE, 5000), as_messages=st.booleans())
async def test_context_length_exceeded_names_the_field(
    stub: Stub, health_model: str, words: int, as_messages: bool
) -> None:
    text = "the " * words
    if as_messages:
        request = pb.GenerateRequest(model_id=HEALTH_ID, messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])
    else:
        request = pb.GenerateRequest(model_id=HEALTH_ID, prompt=text)
    frames, error = await failed_stream(stub.Generate(request, timeout=CALL_TIMEOUT))
    assert frames == []
    assert error.code() == Code.INVALID_ARGUMENT
    info, fields = rich_details(error)
    assert info.reason == "CONTEXT_LENGTH_EXCEEDED"
    assert fields == ["messages" if as_messages else "prompt"]


async def test_a_long_prompt_does_not_hold_the_model_after_its_deadline(stub: Stub, health_model: str) -> None:
    # 350 kB, all byte fallback: ~8 s of tokenization here, so a machine 4 times faster still shows the bug.
    slow = pb.GenerateRequest(model_id=HEALTH_ID, prompt="\u00e9" * 175_000)
    frames, error = await failed_stream(stub.Generate(slow, timeout=0.5))
    assert frames == []
    assert error.code() in (Code.INVALID_ARGUMENT, Code.DEADLINE_EXCEEDED)
    loop = asyncio.get_running_loop()
    started, late = loop.time(), None
    try:
        await collect(stub.Generate(greedy("the world", 4, model_id=HEALTH_ID), timeout=1.5))
    except grpc.aio.AioRpcError as error:
        late = error.code()
    waited = loop.time() - started
    assert late is None, f"a 4-token generation after the deadline of the long prompt: {late} after {waited:.1f} s"
