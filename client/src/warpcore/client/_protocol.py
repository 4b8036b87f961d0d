"""Pure translation between Python values and protocol messages, shared by both clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from warpcore._local_settings import MAX_PROMPT_CACHE_TOKENS
from warpcore.client._checks import UINT32_MAX, choice, generation_values, known_options, tokens, whole
from warpcore.client._extras import cache_breakpoint, content_parts, logprobs_from, pooling
from warpcore.client._formats import Parse
from warpcore.client._message_mappings import mapping_message
from warpcore.client._messages import Message
from warpcore.client._models import KeepAliveLike, Model, ModelType, duration_message, keep_alive_message, model_from
from warpcore.client._options import NOT_GIVEN, BackendOptions, BaseGenerationOptions, GenerationOptions
from warpcore.client._tools import (
    chat_role,
    levels,
    message_fields,
    request_fields,
    tool_calls_from,
)
from warpcore.client._types import (
    ApiConfig,
    Backend,
    FinishReason,
    GenerateResult,
    LocalConfig,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Timings,
    ToolCallDelta,
    Usage,
)
from warpcore.v1 import inference_pb2 as pb

BackendLike = Backend | str | int
ConfigLike = ApiConfig | LocalConfig | pb.BackendConfig
MessageLike = Message | tuple[str, str] | Mapping[str, Any] | pb.ChatMessage
"""A chat turn: a Message, a (role, text) pair, a {"role": ..., "content": ...} mapping as the vendors' SDKs take
it (the content a str, or a list of text parts and images), or the protobuf message."""

_API_FIELDS = {"api_key", "organization", "base_url", "api_timeout", "unlisted"}


def backend_type(backend: BackendLike) -> pb.BackendType.ValueType:
    """The protocol enum for "openai", Backend.OPENAI, or the enum value itself."""
    if isinstance(backend, int):
        return pb.BackendType.ValueType(backend)
    name = str(backend).lower().replace(".", "_").replace("-", "_")
    try:
        return pb.BackendType.Value(f"BACKEND_TYPE_{Backend(name).name}")
    except ValueError:
        choices = ", ".join(member.value for member in Backend)
        raise ValueError(f"unknown backend {backend!r}; choose one of {choices}") from None


def backend_config(config: ConfigLike | None, options: BackendOptions) -> pb.BackendConfig | None:
    """A BackendConfig from a dataclass, a protobuf, or keyword arguments (None: all from the server's environment)."""
    known_options(options, BackendOptions.__optional_keys__)
    if config is not None and options:
        raise TypeError("give backend settings either as config= or as keyword arguments, not both")
    if isinstance(config, pb.BackendConfig):
        return config
    if config is None and not options:
        return None
    if config is None:
        api = _API_FIELDS & options.keys()
        if api and len(api) != len(options):
            raise TypeError("API settings and local settings cannot be mixed")
        fields: dict[str, Any] = dict(options)
        config = ApiConfig(timeout=fields.pop("api_timeout", None), **fields) if api else LocalConfig(**fields)
    if not isinstance(config, ApiConfig | LocalConfig):
        raise TypeError(
            f"config= takes an ApiConfig, a LocalConfig or a BackendConfig message, not {type(config).__name__};"
            " or give the settings as keyword arguments"
        )
    if isinstance(config, ApiConfig):
        api_config = pb.ApiConfig(
            api_key=config.api_key, organization=config.organization, base_url=config.base_url, unlisted=config.unlisted
        )
        if config.timeout is not None:
            api_config.timeout.CopyFrom(duration_message(config.timeout))
        return pb.BackendConfig(api=api_config)
    if config.prompt_cache_tokens is not None:
        tokens("prompt_cache_tokens", config.prompt_cache_tokens, "no prompt cache", MAX_PROMPT_CACHE_TOKENS)
    for name, low, high, kind in _LOCAL_INTEGERS:
        if (value := getattr(config, name)) is not None:
            whole(name, value, low, high, kind)
    numa = pb.NUMA_STRATEGY_UNSPECIFIED
    if config.numa_strategy:
        strategy = choice("numa_strategy", config.numa_strategy, levels(pb.NumaStrategy))
        numa = pb.NumaStrategy.Value(f"NUMA_STRATEGY_{strategy.upper()}")
    return pb.BackendConfig(
        local=pb.LocalBackendConfig(
            threads=config.threads,
            use_gpu=config.use_gpu,
            gpu_layers=config.gpu_layers,
            parallel=config.parallel,
            prompt_cache_tokens=config.prompt_cache_tokens,
            llama_cpp=pb.LlamaCppConfig(
                use_mmap=config.use_mmap,
                use_mlock=config.use_mlock,
                numa_strategy=numa,
                chat_format=config.chat_format,
                embedding=config.embedding,
                pooling=pooling(config.pooling),
                mmproj=config.mmproj,
            ),
        )
    )


_LOCAL_INTEGERS = (
    ("threads", 0, UINT32_MAX, "uint32"),
    ("parallel", 0, UINT32_MAX, "uint32"),
    ("gpu_layers", -(2**31), 2**31 - 1, "int32"),
)
"""LocalConfig's integers, each within its protocol field."""


def load_request(
    model: str,
    backend: BackendLike,
    model_id: str | None,
    context_size: int | None,
    keep_alive: KeepAliveLike | None,
    config: ConfigLike | None,
    options: BackendOptions,
    model_type: ModelType | None = None,
) -> pb.LoadModelRequest:
    if context_size is not None:
        whole("context_size", context_size, 0, UINT32_MAX, "uint32")
    kind = pb.MODEL_TYPE_UNSPECIFIED
    if model_type is not None:
        named = choice("model_type", model_type, ("text_to_text", "text_to_embedding"))
        kind = pb.ModelType.Value(f"MODEL_TYPE_{named.upper()}")
    return pb.LoadModelRequest(
        backend=backend_type(backend),
        model=model,
        model_id=model_id or "",
        model_type=kind,
        backend_config=backend_config(config, options),
        model_config=pb.ModelConfig(context_size=context_size, keep_alive=keep_alive_message(keep_alive)),
    )


def list_request(
    backend: BackendLike | None, config: ConfigLike | None, options: BackendOptions
) -> pb.ListModelsRequest:
    return pb.ListModelsRequest(
        backend=backend_type(backend) if backend is not None else pb.BACKEND_TYPE_UNSPECIFIED,
        backend_config=backend_config(config, options),
    )


def _chat_message(message: MessageLike) -> pb.ChatMessage:
    if isinstance(message, pb.ChatMessage):
        return message
    if isinstance(message, Message):
        return pb.ChatMessage(
            role=chat_role(message.role),
            content=message.content,
            parts=content_parts(message.parts),
            cache_breakpoint=cache_breakpoint(message.cache),
            **message_fields(message),
        )
    if isinstance(message, Mapping):
        return mapping_message(message)
    if not isinstance(message, tuple) or len(message) != 2:
        raise TypeError(f"a message is a Message, a (role, text) pair or a mapping, not {type(message).__name__}")
    role, content = message
    return pb.ChatMessage(role=chat_role(role), content=content)


def generate_request(
    model_id: str,
    prompt: str | None,
    messages: Sequence[MessageLike] | None,
    options: BaseGenerationOptions,
    response_format: Any = NOT_GIVEN,
) -> tuple[pb.GenerateRequest, Parse | None]:
    """A GenerateRequest from a prompt or chat messages ((role, content) pairs, Message or ChatMessage), and the
    parser of its structured answer when response_format (in `options`, or generate()'s keyword) asks for JSON."""
    if not isinstance(model_id, str):  # protobuf would take None as unset, for the server to refuse
        raise TypeError(f"model_id is a str, not {type(model_id).__name__}")
    if (prompt is None) == (messages is None):
        raise TypeError("give exactly one of prompt= and messages=")
    if prompt is not None and not isinstance(prompt, str):  # protobuf would take bytes, as UTF-8
        raise TypeError(f"prompt is a str, not {type(prompt).__name__}")
    given = cast(GenerationOptions, options)  # count_tokens' options hold its response_format, if any
    if response_format is not NOT_GIVEN:  # generate()'s keyword, given (None too, refused as any other non-format)
        given = {**options, "response_format": response_format}
    known_options(given, GenerationOptions.__optional_keys__)
    generation_values(given)
    request_options, fields, parse = request_fields(given)
    stop = fields.pop("stop", [])
    if isinstance(stop, str):  # one sequence, as OpenAI's SDK takes it, not a sequence of its characters
        stop = [stop]
    request = pb.GenerateRequest(
        model_id=model_id,
        prompt=prompt or "",
        messages=[_chat_message(message) for message in messages or ()],
        options=pb.GenerationOptions(stop_sequences=stop, **fields),
        **request_options,
    )
    return request, parse


def models_from(messages: Iterable[pb.Model]) -> list[Model]:
    return [model_from(message) for message in messages]


def event_from(frame: pb.GenerateResponse) -> StreamEvent:
    kind = frame.WhichOneof("frame")
    if kind == "delta":
        delta = frame.delta
        return TextDelta(delta.text, logprobs_from(delta.logprobs) if delta.logprobs else (), delta.refusal)
    if kind == "tool_call":
        call = frame.tool_call
        return ToolCallDelta(call.index, call.id, call.name, call.arguments)
    if kind == "reasoning":
        return ReasoningDelta(frame.reasoning.text, frame.reasoning.signature, frame.reasoning.redacted)
    result = frame.result
    first = result.timings.time_to_first_token
    time_to_first_token = (
        first.ToTimedelta().total_seconds() if result.timings.HasField("time_to_first_token") else None
    )
    return GenerateResult(
        finish_reason=finish_reason_from(result.finish_reason),
        usage=usage_from(result.usage) if result.HasField("usage") else None,
        timings=Timings(
            time_to_first_token=time_to_first_token,
            total=result.timings.total.ToTimedelta().total_seconds(),
        ),
        upstream_request_id=result.upstream_request_id,
        tool_calls=tool_calls_from(result.tool_calls),
        stop_sequence=result.stop_sequence,
        context_window_exceeded=result.context_window_exceeded,
    )


def usage_from(usage: pb.Usage) -> Usage:
    return Usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_prompt_tokens,
        usage.cache_creation_tokens,
        usage.reasoning_tokens,
    )


def finish_reason_from(value: pb.FinishReason.ValueType) -> FinishReason:
    """A finish reason; UNSPECIFIED for a value newer than these stubs (proto3 enums are open)."""
    name = pb.FinishReason.Name(value) if value in pb.FinishReason.values() else "FINISH_REASON_UNSPECIFIED"
    return FinishReason(name.removeprefix("FINISH_REASON_").lower())
