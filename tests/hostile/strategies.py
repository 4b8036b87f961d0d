"""Hypothesis strategies for hostile requests: any value of every field (the values themselves in `values`), half of
them in otherwise sane requests."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import duration_pb2
from hypothesis import strategies as st

from tests.conftest import TINY_MODEL
from tests.hostile import ANTHROPIC_ID, FAKE_BASE_URL, HEALTH_ID, OPENAI_ID, REFUSED_BASE_URL, UNRESOLVED_BASE_URL
from tests.hostile.values import (
    ENUM,
    FLOAT32,
    IDS,
    INT32,
    INT64,
    JSON_TEXT,
    NONEMPTY_SMALL_TEXT,
    NONEMPTY_TEXT,
    SMALL_TEXT,
    STOPS,
    TEXT,
    TOOL_NAMES,
    UINT32,
)
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

T = TypeVar("T")


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
    [FAKE_BASE_URL, REFUSED_BASE_URL, "", "ftp://127.0.0.1/", "file:///etc/passwd", "127.0.0.1:1", UNRESOLVED_BASE_URL]
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
        if draw(st.booleans()):
            fields = {"type": ENUM, "name": SMALL_TEXT, "schema_json": JSON_TEXT, "strict": st.booleans()}
            options.response_format.CopyFrom(draw(st.builds(tools_pb2.ResponseFormat, **fields)))
        if draw(st.booleans()):
            options.reasoning.CopyFrom(draw(st.builds(tools_pb2.ReasoningOptions, effort=ENUM, budget_tokens=UINT32)))
    if draw(st.booleans()):
        _add_tools(draw, request)
    return request


def _add_tools(draw: st.DrawFn, request: pb.GenerateRequest) -> None:
    """Tools, a tool choice, and tool calls, results and reasoning in the turns: any values at all."""
    tools = st.builds(tools_pb2.Tool, name=TOOL_NAMES, description=SMALL_TEXT, parameters_json=JSON_TEXT)
    count = draw(st.one_of(st.integers(0, 3), st.just(129), st.just(1000)))
    request.tools.extend(draw(st.lists(tools, min_size=count, max_size=count)))
    request.tool_choice.CopyFrom(draw(st.builds(tools_pb2.ToolChoice, mode=ENUM, name=TOOL_NAMES)))
    if (parallel := draw(_maybe(st.booleans()))) is not None:
        request.parallel_tool_calls = parallel
    calls = st.lists(st.builds(tools_pb2.ToolCall, id=SMALL_TEXT, name=TOOL_NAMES, arguments=JSON_TEXT), max_size=3)
    blocks = st.lists(
        st.builds(tools_pb2.ReasoningBlock, text=SMALL_TEXT, signature=SMALL_TEXT, redacted=st.booleans()), max_size=2
    )
    turns = st.builds(
        pb.ChatMessage,
        role=st.one_of(VALID_ROLES, st.just(pb.ROLE_TOOL), ENUM),
        content=SMALL_TEXT,
        tool_calls=calls,
        tool_call_id=SMALL_TEXT,
        is_error=st.booleans(),
        reasoning=blocks,
    )
    request.messages.extend(draw(st.lists(turns, max_size=4)))
