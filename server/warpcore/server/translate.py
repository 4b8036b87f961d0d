"""Validate protobuf requests into domain values, and turn domain values into protobuf responses."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from google.protobuf import duration_pb2

from warpcore.server.domain import (
    ApiSettings,
    BackendKind,
    BackendSettings,
    ChatMessage,
    Finish,
    FinishReason,
    GenerationParams,
    LocalSettings,
    NumaStrategy,
    Role,
)
from warpcore.server.errors import InvalidArgumentError
from warpcore.server.registry import LoadedModel, LoadSpec
from warpcore.v1 import inference_pb2 as pb

DEFAULT_MAX_TOKENS = 256
MAX_MAX_TOKENS = 32768
MAX_STOP_SEQUENCES = 16
MAX_ID_LENGTH = 256
MIN_CONTEXT_SIZE = 16
MAX_CONTEXT_SIZE = 131072
MAX_TIMEOUT_SECONDS = 86400

_BACKENDS = {
    pb.BACKEND_TYPE_OPENAI: BackendKind.OPENAI,
    pb.BACKEND_TYPE_ANTHROPIC: BackendKind.ANTHROPIC,
    pb.BACKEND_TYPE_LLAMA_CPP: BackendKind.LLAMA_CPP,
}
_BACKEND_TYPES = {kind: backend_type for backend_type, kind in _BACKENDS.items()}
_ROLES = {pb.ROLE_SYSTEM: Role.SYSTEM, pb.ROLE_USER: Role.USER, pb.ROLE_ASSISTANT: Role.ASSISTANT}
_NUMA = {
    pb.NUMA_STRATEGY_DISABLED: NumaStrategy.DISABLED,
    pb.NUMA_STRATEGY_DISTRIBUTE: NumaStrategy.DISTRIBUTE,
    pb.NUMA_STRATEGY_ISOLATE: NumaStrategy.ISOLATE,
    pb.NUMA_STRATEGY_NUMACTL: NumaStrategy.NUMACTL,
    pb.NUMA_STRATEGY_MIRROR: NumaStrategy.MIRROR,
}
_FINISH_REASONS = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidArgumentError(message, field=field)


def _check_id(value: str, field: str) -> str:
    """A required id: non-empty, printable, without surrounding spaces, at most MAX_ID_LENGTH characters."""
    _require(bool(value), field, f"{field} is required")
    _require(len(value) <= MAX_ID_LENGTH, field, f"{field} is longer than {MAX_ID_LENGTH} characters")
    _require(
        value.isprintable() and value.strip() == value, field, f"{field} must be printable, without surrounding spaces"
    )
    return value


def model_id(value: str) -> str:
    return _check_id(value, "model_id")


def backend_kind(value: int, field: str = "backend") -> BackendKind:
    if value not in _BACKENDS:
        names = ", ".join(pb.BackendType.Name(backend_type) for backend_type in _BACKENDS)
        raise InvalidArgumentError(f"{field} must be one of {names}", field=field)
    return _BACKENDS[value]  # type: ignore[index]


def backend_settings(config: pb.BackendConfig, field: str = "backend_config") -> BackendSettings | None:
    kind = config.WhichOneof("config")
    if kind == "api":
        api = config.api
        timeout = None
        if api.HasField("timeout"):
            _require(
                0 <= api.timeout.seconds <= MAX_TIMEOUT_SECONDS and 0 <= api.timeout.nanos < 10**9,
                f"{field}.api.timeout",
                f"timeout must be between 0 and {MAX_TIMEOUT_SECONDS} seconds",
            )
            timeout = api.timeout.seconds + api.timeout.nanos / 1e9
            _require(timeout > 0, f"{field}.api.timeout", "timeout must be positive")
        if api.HasField("base_url"):
            _require(_is_http_url(api.base_url), f"{field}.api.base_url", "base_url must be an http:// or https:// URL")
        for name in ("api_key", "organization"):
            if api.HasField(name):
                # These travel in HTTP headers; the message must not echo a key.
                value = getattr(api, name)
                _require(
                    bool(value) and value.isascii() and value.isprintable(),
                    f"{field}.api.{name}",
                    f"{name} must be non-empty printable ASCII",
                )
        return ApiSettings(
            api_key=api.api_key if api.HasField("api_key") else None,
            organization=api.organization if api.HasField("organization") else None,
            base_url=api.base_url if api.HasField("base_url") else None,
            timeout=timeout,
        )
    if kind == "local":
        local, llama = config.local, config.local.llama_cpp
        if local.HasField("threads"):
            _require(1 <= local.threads <= 1024, f"{field}.local.threads", "threads must be between 1 and 1024")
        if local.HasField("parallel"):
            _require(1 <= local.parallel <= 64, f"{field}.local.parallel", "parallel must be between 1 and 64")
        if local.HasField("gpu_layers"):
            _require(local.gpu_layers >= -1, f"{field}.local.gpu_layers", "gpu_layers must be -1 (all) or more")
        numa = None
        if llama.numa_strategy != pb.NUMA_STRATEGY_UNSPECIFIED:
            numa = _NUMA.get(llama.numa_strategy)
            _require(numa is not None, f"{field}.local.llama_cpp.numa_strategy", "unknown numa_strategy")
        return LocalSettings(
            threads=local.threads if local.HasField("threads") else None,
            use_gpu=local.use_gpu if local.HasField("use_gpu") else None,
            gpu_layers=local.gpu_layers if local.HasField("gpu_layers") else None,
            use_mmap=llama.use_mmap if llama.HasField("use_mmap") else None,
            use_mlock=llama.use_mlock if llama.HasField("use_mlock") else None,
            numa=numa,
            chat_format=llama.chat_format if llama.HasField("chat_format") else None,
            parallel=local.parallel if local.HasField("parallel") else None,
        )
    return None


def _is_http_url(value: str) -> bool:
    """An http(s) URL whose host and port an HTTP client can use."""
    if not value.isascii() or not value.isprintable() or " " in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        if parts.hostname:
            parts.hostname.encode("idna")
    except (ValueError, UnicodeError):
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def load_spec(request: pb.LoadModelRequest) -> LoadSpec:
    backend = backend_kind(request.backend)
    name = _check_id(request.model, "model")
    _require(
        request.model_type in (pb.MODEL_TYPE_UNSPECIFIED, pb.MODEL_TYPE_TEXT_TO_TEXT),
        "model_type",
        "model_type must be MODEL_TYPE_TEXT_TO_TEXT, the only type served",
    )
    context_size = None
    if request.model_config.HasField("context_size"):
        context_size = request.model_config.context_size
        _require(
            MIN_CONTEXT_SIZE <= context_size <= MAX_CONTEXT_SIZE,
            "model_config.context_size",
            f"context_size must be between {MIN_CONTEXT_SIZE} and {MAX_CONTEXT_SIZE} tokens",
        )
    return LoadSpec(
        model_id=_check_id(request.model_id or request.model, "model_id"),
        backend=backend,
        name=name,
        settings=backend_settings(request.backend_config),
        context_size=context_size,
    )


def generation_params(
    request: pb.GenerateRequest, time_remaining: float | None, max_tokens_limit: int = MAX_MAX_TOKENS
) -> GenerationParams:
    _check_id(request.model_id, "model_id")
    has_prompt, has_messages = bool(request.prompt), bool(request.messages)
    _require(has_prompt != has_messages, "prompt", "set exactly one of prompt and messages")
    messages = []
    for index, message in enumerate(request.messages):
        role = _ROLES.get(message.role)
        _require(role is not None, f"messages[{index}].role", "role must be ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT")
        assert role is not None
        messages.append(ChatMessage(role, message.content))
    _require(
        not messages or any(message.role is not Role.SYSTEM for message in messages),
        "messages",
        "messages must hold at least one user or assistant message",
    )
    options = request.options
    max_tokens = options.max_tokens if options.HasField("max_tokens") else DEFAULT_MAX_TOKENS
    _require(
        1 <= max_tokens <= max_tokens_limit,
        "options.max_tokens",
        f"max_tokens must be between 1 and {max_tokens_limit}",
    )
    if options.HasField("temperature"):
        _require(
            math.isfinite(options.temperature) and 0 <= options.temperature <= 2,
            "options.temperature",
            "temperature must be between 0 and 2",
        )
    if options.HasField("top_p"):
        _require(0 < options.top_p <= 1, "options.top_p", "top_p must be greater than 0 and at most 1")
    if options.HasField("top_k"):
        _require(options.top_k >= 1, "options.top_k", "top_k must be at least 1")
    stops = tuple(options.stop_sequences)
    _require(len(stops) <= MAX_STOP_SEQUENCES, "options.stop_sequences", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    _require(all(stops), "options.stop_sequences", "stop sequences must not be empty")
    return GenerationParams(
        prompt=request.prompt if has_prompt else None,
        messages=tuple(messages),
        max_tokens=max_tokens,
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        top_k=options.top_k if options.HasField("top_k") else None,
        stop=stops,
        system=options.system if options.HasField("system") else None,
        seed=options.seed if options.HasField("seed") else None,
        timeout=time_remaining,
    )


def model_message(model: LoadedModel) -> pb.Model:
    return pb.Model(
        id=model.id,
        backend=_BACKEND_TYPES[model.backend],
        name=model.name,
        type=pb.MODEL_TYPE_TEXT_TO_TEXT,
        state=pb.MODEL_STATE_READY,
        context_size=model.info.context_size,
    )


def available_model_message(backend: BackendKind, name: str) -> pb.Model:
    return pb.Model(
        id=name,
        backend=_BACKEND_TYPES[backend],
        name=name,
        type=pb.MODEL_TYPE_TEXT_TO_TEXT,
        state=pb.MODEL_STATE_AVAILABLE,
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def result_frame(finish: Finish, time_to_first_token: float | None, total: float) -> pb.GenerateResponse:
    timings = pb.Timings(total=_duration(total))
    if time_to_first_token is not None:
        timings.time_to_first_token.CopyFrom(_duration(time_to_first_token))
    return pb.GenerateResponse(
        result=pb.GenerateResult(
            finish_reason=_FINISH_REASONS[finish.reason],
            usage=pb.Usage(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens),
            timings=timings,
            upstream_request_id=finish.upstream_request_id,
        )
    )
