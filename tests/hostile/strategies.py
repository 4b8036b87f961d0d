"""Hostile input: arbitrary field values get a documented status with rich details, never UNKNOWN or INTERNAL."""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, load_tiny, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.tiny_model import write_tiny_model
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

Code = grpc.StatusCode
Backend: TypeAlias = pb.BackendType.ValueType
T = TypeVar("T")

HEALTH_ID = "hostile-input-health-check"  # the tiny model every test keeps loaded, and checks after each example
OPENAI_ID = "hostile-input-openai"  # models on the fake upstreams, for Generate
ANTHROPIC_ID = "hostile-input-anthropic"
OPENAI_KEY = "sk-hostile-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-hostile-0123456789"
CONTEXT_SIZE = 256  # tokens: llama.cpp's smallest context, so that no valid request generates for long
CALL_TIMEOUT = 30.0  # seconds: a bound on every call, far above what any of them takes
MAX_DELTAS = 8  # a stream that sent this many deltas was accepted; it is cancelled there to keep examples cheap
ONE_MEGABYTE = 1_000_000
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the server's default --max-message-bytes
SERVICE = "/warpcore.v1.InferenceService/"
# A refused loopback port: connection refused is UNAVAILABLE by the README's table, and nothing leaves the host.
REFUSED_BASE_URL = "http://127.0.0.1:1/v1"
FAKE_BASE_URL = "{fake}"  # replaced by the fake upstream's base URL of the backend under test
# The README documents no field for an upstream's refusal (the fakes here never refuse a request they parse).
REASONS_WITHOUT_FIELD = {"UPSTREAM_INVALID_ARGUMENT"}

# Hypothesis caches (Unicode tables, source constants) outside the repository, not in ./.hypothesis.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "warpcore-hypothesis")
HYPOTHESIS = settings(  # the base of each test's settings
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it reruns failures many times
    database=None,  # no .hypothesis/ folder in the repository
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Strategies

UINT32 = st.integers(0, 2**32 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
ENUM = st.one_of(st.integers(-1, 6), INT32)  # the known values, their neighbours, and any int32
FLOAT32 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-45, 1.0, 1.0000001, 2.0, 2.0000002, -1.0, 3.4e38]),
    st.floats(width=32),
)
ODD_CHARS = "\x00\x01\x1b\x7f\u0085\u00a0\u0301\u200b\u200d\u2028\u202e\ufeff\ufffd\uffff\U0001f600\U0010ffff"
ODD_PIECES = ["{{", "}}", "{%", "<s>", "</s>", "<0x00>", "<user>", "\\", "%s", "%n", "\r\n", "..", "/", "hf:"]
SMALL_TEXT = st.lists(
    st.one_of(st.text(max_size=8), st.text(alphabet=ODD_CHARS, max_size=4), st.sampled_from(ODD_PIECES)),
    max_size=8,
).map("".join)


def _repeat(unit: str, size: int) -> str:
    """`unit` repeated to about `size` UTF-8 bytes (at least once)."""
    return unit * max(1, size // len(unit.encode()))


NONEMPTY_SMALL_TEXT = st.builds(str.__add__, st.characters(codec="utf-8"), SMALL_TEXT)
# Up to 1 MB of text llama.cpp tokenizes in linear time: the tiny model's vocabulary has pieces for these
# characters. Any other character goes through byte fallback, which llama.cpp tokenizes in quadratic time; the
# server tokenizes long prompts in pieces (tests/test_prompt_tokenizer.py).
IN_VOCABULARY = "abcdefghijklmnopqrstuvwxyz "
BIG_TEXT = st.builds(_repeat, st.text(alphabet=IN_VOCABULARY, min_size=1, max_size=8), st.integers(1, ONE_MEGABYTE))
# Any characters at all, up to 16 kB: byte fallback stays cheap at that size.
MEDIUM_TEXT = st.builds(_repeat, st.text(min_size=1, max_size=8), st.integers(1, 16_000))
NONEMPTY_TEXT = st.one_of(NONEMPTY_SMALL_TEXT, NONEMPTY_SMALL_TEXT, MEDIUM_TEXT, BIG_TEXT)
TEXT = st.one_of(st.just(""), NONEMPTY_TEXT)

HOSTILE_NAMES = [
    "",
    " ",
    ".",
    "..",
    "../",
    "../x.gguf",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "/etc/passwd.gguf",
    "/dev/zero.gguf",
    "/proc/self/environ.gguf",
    "~/.ssh/id_rsa.gguf",
    "./../x.gguf",
    "hf/../../x.gguf",
    "hf/warpcore/tiny/../../../../x.gguf",
    "..\\x.gguf",
    "%2e%2e/x.gguf",
    "..%2fx.gguf",
    "file:///etc/passwd.gguf",
    "x.gguf\x00",
    "\x00",
    "a\x00/../../x.gguf",
    "hf:",
    "hf:a",
    "hf:a/b",
    "hf:a/b:",
    "hf::",
    "hf:/:",
    "hf:a/:x.gguf",
    "hf:/b:x.gguf",
    "hf:a/b/c:x.gguf",
    "hf:../..:x.gguf",
    "hf:a/b:../../x.gguf",
    "hf:a/b:/etc/passwd.gguf",
    "hf:a/b:x.gguf\x00",
    "hf:warpcore/tiny:..",
    "hf:warpcore/tiny:tiny.gguf/..",
    "hf:warpcore/tiny:./tiny.gguf",
    "hf:warpcore/tiny:tiny.gguf:tiny.gguf",
    "HF:warpcore/tiny:tiny.gguf",
    " hf:warpcore/tiny:tiny.gguf",
    "hf:warpcore/tiny:tiny.gguf ",
    "hf/warpcore/tiny",
    "hf/warpcore/tiny/tiny.gguf",
    "hf/warpcore/tiny/./tiny.gguf",
    "hf//warpcore//tiny//tiny.gguf",
    "a" * 256,
    "a" * 257,
    "a" * 251 + ".gguf",
    "a" * 300 + ".gguf",
    "\u00e9" * 200 + ".gguf",
    "\U0001f600" * 80 + ".gguf",
    "/".join(["a"] * 120) + ".gguf",
    TINY_MODEL,
    HEALTH_ID,
]
PATH_SEGMENTS = ["", ".", "..", "...", "hf", "warpcore", "tiny", "tiny.gguf", "x.gguf", "etc", "\x00", "~", "a:b"]
PATH_LIKE = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/", "hf:", "hf:warpcore/tiny:", "./"]),
    st.lists(st.sampled_from(PATH_SEGMENTS), max_size=8),
)
HF_LIKE = st.builds(
    lambda owner, repo, separator, file: f"hf:{owner}{separator}{repo}:{file}",
    st.sampled_from(["", "a", "..", ".", "-a", "warpcore", "a b", "\x00"]),
    st.sampled_from(["", "b", "..", "tiny", "b/c"]),
    st.sampled_from(["/", "", "//", ":"]),
    st.sampled_from(["", "tiny.gguf", "x", "../x.gguf", "/etc/passwd.gguf", "a\x00.gguf", "a/b.gguf"]),
)
IDS = st.one_of(st.sampled_from(HOSTILE_NAMES), SMALL_TEXT, st.text(min_size=250, max_size=300), PATH_LIKE, HF_LIKE)


def _maybe(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), strategy)


def _duration(seconds: int, nanos: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


DURATIONS = st.one_of(
    st.builds(_duration, INT64, INT32),
    st.builds(_duration, st.integers(0, 3), st.integers(0, 10**9 - 1)),  # mostly valid, some very short
    st.builds(_duration, st.just(86_400), st.integers(0, 1)),
)
TOKEN = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)  # header-safe
BASE_URLS = st.sampled_from(
    [FAKE_BASE_URL, REFUSED_BASE_URL, "", "ftp://127.0.0.1/", "file:///etc/passwd", "127.0.0.1:1", "HTTP://x"]
)


def _pick(draw: st.DrawFn, sane: bool, valid: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> T:
    """A value from `valid` in a sane request; in a hostile one, from either."""
    return draw(valid if sane else st.one_of(valid, hostile))


VALID_BACKENDS = st.sampled_from([pb.BACKEND_TYPE_OPENAI, pb.BACKEND_TYPE_ANTHROPIC, pb.BACKEND_TYPE_LLAMA_CPP])
KNOWN_CHAT_FORMATS = st.sampled_from(["gemma", "chatml", "llama-2", "zephyr"])


@st.composite
def api_configs(draw: st.DrawFn, sane: bool) -> pb.ApiConfig:
    """ApiConfig with header-safe keys and base URLs that stay on the loopback interface."""
    config = pb.ApiConfig()
    if (key := draw(_maybe(TOKEN))) is not None:
        config.api_key = key
    if (organization := draw(_maybe(TOKEN))) is not None:
        config.organization = organization
    base_url = _pick(draw, sane, st.sampled_from([None, FAKE_BASE_URL]), _maybe(BASE_URLS))
    if base_url is not None:
        config.base_url = base_url
        if sane:
            config.api_key = key or "sk-sane"  # a base URL in the request needs a key from the request
    valid_timeouts = _maybe(st.builds(_duration, st.integers(1, 86_399), st.integers(0, 10**9 - 1)))
    if (timeout := _pick(draw, sane, valid_timeouts, _maybe(DURATIONS))) is not None:
        config.timeout.CopyFrom(timeout)
    return config


@st.composite
def local_configs(draw: st.DrawFn, sane: bool) -> pb.LocalBackendConfig:
    config = pb.LocalBackendConfig()
    if (threads := _pick(draw, sane, _maybe(st.integers(1, 4)), UINT32)) is not None:
        config.threads = threads
    if (use_gpu := draw(_maybe(st.booleans()))) is not None:
        config.use_gpu = use_gpu
    if (gpu_layers := _pick(draw, sane, _maybe(st.integers(-1, 64)), INT32)) is not None:
        config.gpu_layers = gpu_layers
    if draw(st.booleans()):
        llama = config.llama_cpp
        llama.SetInParent()
        if (use_mmap := draw(_maybe(st.booleans()))) is not None:
            llama.use_mmap = use_mmap
        if (use_mlock := draw(_maybe(st.booleans()))) is not None:
            llama.use_mlock = use_mlock
        llama.numa_strategy = _pick(draw, sane, st.sampled_from([0, 1]), ENUM)  # type: ignore[assignment]
        hostile_formats = st.one_of(st.sampled_from(["GEMMA", "", "gemma "]), SMALL_TEXT)
        if (chat_format := _pick(draw, sane, _maybe(KNOWN_CHAT_FORMATS), hostile_formats)) is not None:
            llama.chat_format = chat_format
    return config


@st.composite
def backend_configs(draw: st.DrawFn, backend: int, sane: bool) -> pb.BackendConfig | None:
    """In a sane request, the kind of config that fits `backend` (or none); in a hostile one, any."""
    fitting = "local" if backend == pb.BACKEND_TYPE_LLAMA_CPP else "api"
    kind = _pick(draw, sane, st.sampled_from(["absent", fitting]), st.sampled_from(["empty oneof", "api", "local"]))
    if kind == "absent":
        return None
    if kind == "empty oneof":
        return pb.BackendConfig()
    if kind == "api":
        return pb.BackendConfig(api=draw(api_configs(sane)))
    return pb.BackendConfig(local=draw(local_configs(sane)))


@st.composite
def load_requests(draw: st.DrawFn) -> pb.LoadModelRequest:
    """Half sane (valid backend, fitting config, ranges kept) with hostile names; half hostile in every field."""
    sane = draw(st.booleans())
    backend = _pick(draw, sane, VALID_BACKENDS, ENUM)
    names: dict[int, str] = {pb.BACKEND_TYPE_OPENAI: "gpt-4o-mini", pb.BACKEND_TYPE_ANTHROPIC: "claude-test-large"}
    request = pb.LoadModelRequest(
        backend=backend,  # type: ignore[arg-type]
        model=draw(st.one_of(st.just(names.get(backend, TINY_MODEL)), IDS)),
        model_id=draw(st.one_of(st.just(""), st.just(HEALTH_ID), IDS)),
        model_type=_pick(draw, sane, st.sampled_from([0, 1]), ENUM),  # type: ignore[arg-type]
    )
    if (config := draw(backend_configs(backend, sane))) is not None:
        request.backend_config.CopyFrom(config)
    if draw(st.booleans()):
        request.model_config.SetInParent()  # present, possibly empty
        context_sizes = _pick(draw, sane, _maybe(st.integers(16, 2048)), _maybe(st.one_of(st.integers(0, 20), UINT32)))
        if context_sizes is not None:
            request.model_config.context_size = context_sizes
    return request


@st.composite
def list_requests(draw: st.DrawFn) -> pb.ListModelsRequest:
    sane = draw(st.booleans())
    backend = _pick(draw, sane, st.one_of(st.just(0), VALID_BACKENDS), ENUM)
    request = pb.ListModelsRequest(backend=backend)  # type: ignore[arg-type]
    if (config := draw(backend_configs(backend, sane))) is not None:
        request.backend_config.CopyFrom(config)
    return request


VALID_ROLES = st.sampled_from([pb.ROLE_SYSTEM, pb.ROLE_USER, pb.ROLE_ASSISTANT])
STOPS = st.one_of(
    st.lists(SMALL_TEXT, max_size=20),
    st.builds(lambda base, count: [f"{base}{n}" for n in range(count)], SMALL_TEXT, st.integers(17, 5000)),
    st.builds(lambda unit, size: [_repeat(unit, size)], st.text(min_size=1, max_size=4), st.integers(1, ONE_MEGABYTE)),
)


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    """Half sane (a loaded model, one input, options in range), half hostile in every field; any text either way."""
    sane = draw(st.booleans())
    model_ids = st.sampled_from([HEALTH_ID, HEALTH_ID, OPENAI_ID, ANTHROPIC_ID])
    request = pb.GenerateRequest(model_id=_pick(draw, sane, model_ids, IDS))
    inputs = _pick(draw, sane, st.sampled_from(["prompt", "messages"]), st.sampled_from(["both", "neither"]))
    if inputs in ("prompt", "both"):
        request.prompt = draw(NONEMPTY_TEXT if sane else TEXT)
    if inputs in ("messages", "both"):
        roles = _pick(draw, sane, st.just(VALID_ROLES), st.just(ENUM))
        turns = st.lists(st.builds(pb.ChatMessage, role=roles, content=TEXT), min_size=1 if sane else 0, max_size=4)
        request.messages.extend(draw(turns))
        if sane:
            request.messages.append(pb.ChatMessage(role=pb.ROLE_USER, content=draw(SMALL_TEXT)))
    if draw(st.booleans()):
        options = request.options
        options.SetInParent()
        max_tokens = _pick(draw, sane, _maybe(st.integers(1, 16)), st.one_of(st.just(0), UINT32))
        if max_tokens is not None:
            options.max_tokens = max_tokens
        if (temperature := _pick(draw, sane, _maybe(st.floats(0, 2, width=32)), FLOAT32)) is not None:
            options.temperature = temperature
        top_ps = _maybe(st.floats(0, 1, exclude_min=True, width=32))
        if (top_p := _pick(draw, sane, top_ps, FLOAT32)) is not None:
            options.top_p = top_p
        if (top_k := _pick(draw, sane, _maybe(st.integers(1, 1000)), UINT32)) is not None:
            options.top_k = top_k
        options.stop_sequences.extend(_pick(draw, sane, st.lists(NONEMPTY_SMALL_TEXT, max_size=4), STOPS))
        if (system := draw(_maybe(TEXT))) is not None:
            options.system = system
        if (seed := draw(_maybe(UINT32))) is not None:
            options.seed = seed
    return request


# Fixtures and checks


@pytest.fixture
async def health_model(stub: Stub, server: WarpcoreServer) -> AsyncIterator[str]:
    """The tiny model, with the smallest context; when the test ends the server must still serve it, and report
    SERVING through grpc.health.v1."""
    await load_tiny(stub, model_id=HEALTH_ID, context_size=CONTEXT_SIZE)
    yield HEALTH_ID
    await assert_healthy(stub)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "warpcore.v1.InferenceService", f"model:{HEALTH_ID}"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.fixture
async def upstreams(stub: Stub, server_env: dict[str, str]) -> AsyncIterator[dict[int, FakeUpstream]]:
    """Loopback fakes of both APIs, as the server's environment defaults, each with one model loaded."""
    async with FakeOpenAI() as openai_fake, FakeAnthropic(models=["claude-test-large"]) as anthropic_fake:
        server_env.update(
            OPENAI_API_KEY=OPENAI_KEY,
            OPENAI_API_BASE=openai_fake.base_url,
            ANTHROPIC_API_KEY=ANTHROPIC_KEY,
            ANTHROPIC_API_BASE=anthropic_fake.base_url,
        )
        fakes: dict[int, FakeUpstream] = {
            pb.BACKEND_TYPE_OPENAI: openai_fake,
            pb.BACKEND_TYPE_ANTHROPIC: anthropic_fake,
        }
        for backend, model_id in ((pb.BACKEND_TYPE_OPENAI, OPENAI_ID), (pb.BACKEND_TYPE_ANTHROPIC, ANTHROPIC_ID)):
            request = pb.LoadModelRequest(backend=backend, model=fakes[backend].models[0], model_id=model_id)
            await stub.LoadModel(request, timeout=CALL_TIMEOUT)
        yield fakes


async def assert_healthy(stub: Stub) -> None:
    """A normal greedy generation on the tiny model still works."""
    text, result = await collect(stub.Generate(greedy("the world", 4, model_id=HEALTH_ID), timeout=CALL_TIMEOUT))
    assert text
    assert result.finish_reason == pb.FINISH_REASON_LENGTH
    assert result.usage.completion_tokens == 4


def check_failure(error: grpc.aio.AioRpcError, allowed: Collection[Code]) -> error_details_pb2.ErrorInfo:
    """The status is one the call documents, says something, and carries an ErrorInfo (and a field if invalid)."""
    event(f"status {error.code().name}")  # tallied by --hypothesis-show-statistics
    assert error.code() in allowed, f"{error.code().name}: {error.details()!r}"
    assert (error.details() or "").strip(), f"{error.code().name} with an empty message"
    info, fields = rich_details(error)
    assert info.domain == "warpcore.v1"
    assert info.reason
    if error.code() == Code.INVALID_ARGUMENT and info.reason not in REASONS_WITHOUT_FIELD:
        assert fields, f"INVALID_ARGUMENT {info.reason} names no field: {error.details()!r}"
        assert all(fields), "a BadRequest field violation with an empty field"
    return info


async def unary_outcome(call: Any) -> grpc.aio.AioRpcError | None:
    """None when a unary call succeeded, else its error."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    event("status OK")
    return None


async def generate_outcome(stub: Stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError | None:
    """None when the stream was accepted (MAX_DELTAS deltas, or a complete stream), else its error."""
    call = stub.Generate(request, timeout=CALL_TIMEOUT)
    kinds: list[str | None] = []
    failure: grpc.aio.AioRpcError | None = None
    try:
        async for frame in call:
            assert "result" not in kinds, "a frame after the result frame"
            kinds.append(frame.WhichOneof("frame"))
            if kinds.count("delta") >= MAX_DELTAS:
                call.cancel()
                event("status OK (cancelled after the first deltas)")
                return None
    except grpc.aio.AioRpcError as error:
        failure = error
    if failure is not None:
        # A failure after text was sent closes the stream with a result frame first.
        assert not kinds or kinds[-1] == "result", f"{failure.code().name} after {kinds} without a result frame"
        return failure
    assert kinds.count("result") == 1, f"a stream that ended with {kinds}"
    event("status OK (complete stream)")
    return None


def api_request_config(config: pb.BackendConfig, backend: int, fakes: dict[int, FakeUpstream]) -> None:
    """Point the FAKE_BASE_URL placeholder at the fake upstream of `backend` (the OpenAI one for others)."""
    if config.WhichOneof("config") == "api" and config.api.base_url == FAKE_BASE_URL:
        config.api.base_url = fakes.get(backend, fakes[pb.BACKEND_TYPE_OPENAI]).base_url


def api_allowed(config: pb.BackendConfig) -> set[Code]:
    """Statuses the README documents for reaching an upstream with `config`: a refused connection is UNAVAILABLE,
    an upstream timeout DEADLINE_EXCEEDED (the fakes answer within a second, so only shorter timeouts)."""
    allowed = set()
    if config.WhichOneof("config") == "api":
        api = config.api
        if api.base_url == REFUSED_BASE_URL:
            allowed.add(Code.UNAVAILABLE)
        if api.HasField("timeout") and api.timeout.seconds < 1:
            allowed.add(Code.DEADLINE_EXCEEDED)
    return allowed


# Properties


@settings(HYPOTHESIS, max_examples=150)
@given(request=generate_requests())
@example(request=pb.GenerateRequest(model_id=HEALTH_ID, prompt="x" * ONE_MEGABYTE))
@example(
    request=pb.GenerateRequest(model_id=HEALTH_ID, prompt="the", options=pb.GenerationOptions(max_tokens=2**32 - 1))
)
@example(
    request=pb.GenerateRequest(
        model_id=HEALTH_ID, prompt="x", options=pb.GenerationOptions(stop_sequences=[str(n) for n in range(5000)])
    )
)
async def test_generate_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.GenerateRequest
) -> None:
    error = await generate_outcome(stub, request)
    if request.ByteSize() > MAX_MESSAGE_BYTES:  # refused by gRPC itself, before any of our code
        assert error is not None
        assert error.code() == Code.RESOURCE_EXHAUSTED, error.details()
        event("status RESOURCE_EXHAUSTED (message over 4 MiB)")
    elif error is not None:
        # NOT_FOUND: no model has that id. RESOURCE_EXHAUSTED: the model's queue is full (MODEL_BUSY).
        check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED})
    await assert_healthy(stub)


@settings(HYPOTHESIS, max_examples=100)
@given(request=load_requests())
@example(request=pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id=HEALTH_ID))
@example(
    request=pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=HEALTH_ID,
        model_config=pb.ModelConfig(context_size=CONTEXT_SIZE),
    )
)
@example(
    request=pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="hf:a/b", backend_config=pb.BackendConfig())
)
async def test_load_model_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.LoadModelRequest
) -> None:
    api_request_config(request.backend_config, request.backend, upstreams)
    # ALREADY_EXISTS: the id is taken. NOT_FOUND: no such file, or the provider does not offer the model.
    # FAILED_PRECONDITION: a file that is not a servable model (a link out of MODELS_PATH, not a GGUF), no API key.
    allowed = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION}
    error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
    loaded = request.model_id or request.model
    if error is None and loaded not in (HEALTH_ID, OPENAI_ID, ANTHROPIC_ID):
        await stub.UnloadModel(pb.UnloadModelRequest(model_id=loaded), timeout=CALL_TIMEOUT)
    elif error is None:  # the very request that loaded a fixture's model: LoadModel is idempotent
        event("status OK (the same model again)")
    else:
        check_failure(error, allowed | api_allowed(request.backend_config))
    await assert_healthy(stub)


@settings(HYPOTHESIS, max_examples=60)
@given(model_id=st.one_of(IDS, st.sampled_from([OPENAI_ID, ANTHROPIC_ID])))
async def test_unload_model_with_arbitrary_ids(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], model_id: str
) -> None:
    assume(model_id != HEALTH_ID)
    error = await unary_outcome(stub.UnloadModel(pb.UnloadModelRequest(model_id=model_id), timeout=CALL_TIMEOUT))
    if error is None:  # one of the fakes' models: load it again for the next examples
        backend = pb.BACKEND_TYPE_OPENAI if model_id == OPENAI_ID else pb.BACKEND_TYPE_ANTHROPIC
        request = pb.LoadModelRequest(backend=backend, model=upstreams[backend].models[0], model_id=model_id)
        await stub.LoadModel(request, timeout=CALL_TIMEOUT)
    else:
        check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND})  # NOT_FOUND: no model has that id
    await assert_healthy(stub)


@settings(HYPOTHESIS, max_examples=60)
@given(request=list_requests())
async def test_list_models_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.ListModelsRequest
) -> None:
    api_request_config(request.backend_config, request.backend, upstreams)
    error = await unary_outcome(stub.ListModels(request, timeout=CALL_TIMEOUT))
    if error is not None:
        # FAILED_PRECONDITION: no API key anywhere. NOT_FOUND: an upstream that has no model list.
        allowed = {Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.NOT_FOUND}
        check_failure(error, allowed | api_allowed(request.backend_config))
    await assert_healthy(stub)


async def test_request_over_the_message_limit_is_resource_exhausted(stub: Stub, health_model: str) -> None:
    """Above --max-message-bytes (4 MiB) gRPC itself refuses the call, before any of our code runs."""
    request = pb.GenerateRequest(model_id=HEALTH_ID, prompt="x" * MAX_MESSAGE_BYTES)
    frames, error = await failed_stream(stub.Generate(request, timeout=CALL_TIMEOUT))
    assert frames == []
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.details() or "")
    await assert_healthy(stub)


# Model ids never reach outside MODELS_PATH


IN_OPEN = 0x20
IN_ACCESS = 0x01


@contextmanager
def watch_opens(folder: Path) -> Iterator[Callable[[], list[str]]]:
    """inotify on `folder`: the returned function lists the opens and reads seen since, as 'mask:name'."""
    libc = ctypes.CDLL(None, use_errno=True)
    inotify = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if inotify < 0:
        pytest.skip(f"inotify is not available: {os.strerror(ctypes.get_errno())}")
    try:
        if libc.inotify_add_watch(inotify, os.fsencode(folder), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

        def events() -> list[str]:
            seen: list[str] = []
            while True:
                try:
                    data = os.read(inotify, 65536)
                except BlockingIOError:
                    return seen
                offset = 0
                while offset < len(data):
                    mask = int.from_bytes(data[offset + 4 : offset + 8], "little")
                    length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                    name = data[offset + 16 : offset + 16 + length].rstrip(b"\x00").decode(errors="replace")
                    seen.append(f"{mask:#x}:{name or '.'}")
                    offset += 16 + length

        yield events
    finally:
        os.close(inotify)


@pytest.fixture
def escape_routes(server_env: dict[str, str], tmp_path: Path) -> tuple[Path, Path, str]:
    """A private MODELS_PATH with the tiny model and links out of it; outside, a valid GGUF that must stay unread."""
    root, outside = tmp_path / "models", tmp_path / "outside"
    tiny = write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    outside.mkdir()
    shutil.copyfile(tiny, outside / "secret.gguf")  # a model llama.cpp would load: opening it would succeed
    (root / "escape.gguf").symlink_to(outside / "secret.gguf")
    (root / "escape_relative.gguf").symlink_to(Path("..") / "outside" / "secret.gguf")
    (root / "chain.gguf").symlink_to("escape.gguf")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "loop.gguf").symlink_to("loop.gguf")
    (root / "dangling.gguf").symlink_to(outside / "missing.gguf")
    (root / "hf" / "evil" / "repo").mkdir(parents=True)
    (root / "hf" / "evil" / "repo" / "model.gguf").symlink_to(outside / "secret.gguf")
    (root / "hf" / "evil" / "linked").symlink_to(outside, target_is_directory=True)
    server_env["MODELS_PATH"] = str(root)  # read when each adapter is made, so from the next call on
    return root, outside, os.path.relpath(outside, root)


OUTSIDE = "{outside}"  # replaced by the absolute path of the folder outside MODELS_PATH
UP = "{up}"  # replaced by the relative path from MODELS_PATH to that folder ("../outside")
ESCAPE_SEGMENTS = [
    *["..", ".", "", UP, "escape_dir", "secret.gguf", "escape.gguf", "chain.gguf", "hf", "evil", "linked"],
    *["warpcore", "tiny", "tiny.gguf"],
]
ESCAPE_IDS = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "/", "./", OUTSIDE + "/", "hf:evil/linked:", "hf:evil/repo:", "hf:warpcore/tiny:"]),
        st.lists(st.sampled_from(ESCAPE_SEGMENTS), min_size=1, max_size=6),
    ),
    st.sampled_from(
        [
            "escape.gguf",
            "escape_relative.gguf",
            "chain.gguf",
            "./escape.gguf",
            "escape_dir/secret.gguf",
            "escape_dir//secret.gguf",
            "escape_dir/./secret.gguf",
            "hf:evil/repo:model.gguf",
            "hf/evil/repo/model.gguf",
            "hf:evil/linked:secret.gguf",
            "hf/evil/linked/secret.gguf",
            "loop.gguf",
            "dangling.gguf",
            OUTSIDE + "/secret.gguf",
            UP + "/secret.gguf",
            "hf/warpcore/tiny/../../../" + UP + "/secret.gguf",
            "hf:warpcore/tiny:../../../" + UP + "/secret.gguf",
            "hf:evil/repo:" + OUTSIDE + "/secret.gguf",
            "escape.gguf\x00",
            "escape_dir/secret.gguf\x00.gguf",
        ]
    ),
)


def _file_named(root: Path, model: str) -> Path:
    """The file a model id names under `root`, by the README's rule."""
    if model.startswith("hf:"):
        repo, _, filename = model.removeprefix("hf:").partition(":")
        return root / "hf" / repo / filename
    return root / model


@settings(HYPOTHESIS, max_examples=80)
@given(template=ESCAPE_IDS)
@example(template="escape.gguf")
@example(template=OUTSIDE + "/secret.gguf")
@example(template=UP + "/secret.gguf")
@example(template="hf:evil/linked:secret.gguf")
@example(template="hf:warpcore/tiny:tiny.gguf")  # the legitimate model loads
@example(template="hf/warpcore/tiny/../tiny/tiny.gguf")
async def test_no_model_id_reaches_outside_models_path(
    stub: Stub, escape_routes: tuple[Path, Path, str], template: str
) -> None:
    root, outside, up = escape_routes
    model = template.replace(OUTSIDE, str(outside)).replace(UP, up)
    with watch_opens(outside) as opened:
        request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id="escape-attempt")
        error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
        listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP), timeout=CALL_TIMEOUT)
        assert opened() == [], f"{model!r} made the server open or read files outside MODELS_PATH"
    available = [entry.id for entry in listed.models if entry.state == pb.MODEL_STATE_AVAILABLE]
    assert available == [TINY_MODEL]  # no link out of MODELS_PATH is listed
    if error is None:  # only a name of the tiny model inside MODELS_PATH may load
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="escape-attempt"), timeout=CALL_TIMEOUT)
        assert _file_named(root, model).resolve() == root / "hf" / "warpcore" / "tiny" / "tiny.gguf", model
    else:
        # Refused before llama.cpp ran: a malformed or escaping id, no such file, or a link leading out.
        info = check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION})
        assert info.reason != "MODEL_LOAD_FAILED", model
        if str(outside) not in model:  # where a link leads is not revealed
            assert str(outside) not in (error.details() or ""), "a server path in the message"


# Server bugs these properties found: regression tests, and one expected failure (the last) until it is fixed


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
    await assert_healthy(stub)


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
    await assert_healthy(stub)


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
    await assert_healthy(stub)


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
