"""Protobuf requests to domain values and domain values to protobuf responses; the request's rules are the core's
(core/validation.py): this module only checks what the wire shape itself can get wrong (enum values, durations)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import duration_pb2

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS, MAX_TIMEOUT_SECONDS
from warpcore.server.core.content import ContentPart, ImagePart, TextPart
from warpcore.server.core.domain import (
    ApiSettings,
    BackendKind,
    BackendSettings,
    ChatMessage,
    FinishReason,
    GenerationParams,
    LoadSpec,
    LocalSettings,
    NumaStrategy,
    Pooling,
    Role,
)
from warpcore.server.core.engine import GenerationResult
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.registry import LoadedModel
from warpcore.server.core.validation import require
from warpcore.server.rpc.translate_extras import capabilities_message
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb

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
_POOLING = {epb.POOLING_MEAN: Pooling.MEAN, epb.POOLING_CLS: Pooling.CLS, epb.POOLING_LAST: Pooling.LAST}
_FINISH_REASONS = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
_LOCAL = "backend_config.local"
FIELD_PATHS = {
    "context_size": "model_config.context_size",
    "max_tokens": "options.max_tokens",
    "temperature": "options.temperature",
    "top_p": "options.top_p",
    "top_k": "options.top_k",
    "stop": "options.stop_sequences",
    "seed": "options.seed",
    "system": "options.system",
    "logprobs": "options.logprobs",
    "top_logprobs": "options.top_logprobs",
    "settings": "backend_config",
    **{f"settings.{name}": f"backend_config.api.{name}" for name in ("api_key", "base_url", "organization", "timeout")},
    **{f"settings.{name}": f"{_LOCAL}.{name}" for name in ("threads", "parallel", "gpu_layers", "use_gpu")},
    **{f"settings.{name}": f"{_LOCAL}.llama_cpp.{name}" for name in ("use_mmap", "use_mlock", "chat_format")},
    "settings.numa": f"{_LOCAL}.llama_cpp.numa_strategy",
    "settings.embedding": f"{_LOCAL}.llama_cpp.embedding",
    "settings.pooling": f"{_LOCAL}.llama_cpp.pooling",
    "settings.mmproj": f"{_LOCAL}.llama_cpp.mmproj",
    "dimensions": "options.dimensions",
    "normalize": "options.normalize",
    "truncate": "options.truncate",
}
"""Domain field paths (core/validation.py) to the protobuf field paths a BadRequest names."""


def field_path(domain_field: str) -> str:
    return FIELD_PATHS.get(domain_field, domain_field)


def backend_kind(value: int, field: str = "backend") -> BackendKind:
    if value not in _BACKENDS:
        names = ", ".join(pb.BackendType.Name(backend_type) for backend_type in _BACKENDS)
        raise InvalidArgumentError(f"{field} must be one of {names}", field=field)
    return _BACKENDS[value]  # type: ignore[index]


def backend_settings(config: pb.BackendConfig) -> BackendSettings | None:
    kind = config.WhichOneof("config")
    if kind == "api":
        api = config.api
        timeout = None
        if api.HasField("timeout"):
            require(
                0 <= api.timeout.seconds <= MAX_TIMEOUT_SECONDS and 0 <= api.timeout.nanos < 10**9,
                "settings.timeout",
                f"timeout must be between 0 and {MAX_TIMEOUT_SECONDS} seconds",
            )
            timeout = api.timeout.seconds + api.timeout.nanos / 1e9
        return ApiSettings(
            api_key=api.api_key if api.HasField("api_key") else None,
            organization=api.organization if api.HasField("organization") else None,
            base_url=api.base_url if api.HasField("base_url") else None,
            timeout=timeout,
        )
    if kind == "local":
        local, llama = config.local, config.local.llama_cpp
        numa = None
        if llama.numa_strategy != pb.NUMA_STRATEGY_UNSPECIFIED:
            numa = _NUMA.get(llama.numa_strategy)
            require(numa is not None, "settings.numa", "unknown numa_strategy")
        pooling = None
        if llama.pooling != epb.POOLING_UNSPECIFIED:
            pooling = _POOLING.get(llama.pooling)
            require(pooling is not None, "settings.pooling", "unknown pooling")
        return LocalSettings(
            threads=local.threads if local.HasField("threads") else None,
            use_gpu=local.use_gpu if local.HasField("use_gpu") else None,
            gpu_layers=local.gpu_layers if local.HasField("gpu_layers") else None,
            use_mmap=llama.use_mmap if llama.HasField("use_mmap") else None,
            use_mlock=llama.use_mlock if llama.HasField("use_mlock") else None,
            numa=numa,
            chat_format=llama.chat_format if llama.HasField("chat_format") else None,
            parallel=local.parallel if local.HasField("parallel") else None,
            embedding=llama.embedding if llama.HasField("embedding") else None,
            pooling=pooling,
            mmproj=llama.mmproj if llama.HasField("mmproj") else None,
        )
    return None


def load_spec(request: pb.LoadModelRequest) -> LoadSpec:
    backend = backend_kind(request.backend)
    require(
        request.model_type in (pb.MODEL_TYPE_UNSPECIFIED, pb.MODEL_TYPE_TEXT_TO_TEXT),
        "model_type",
        "model_type must be MODEL_TYPE_TEXT_TO_TEXT, the only type served",
    )
    config = request.model_config
    return LoadSpec(
        model_id=request.model_id or request.model,
        backend=backend,
        name=request.model,
        settings=backend_settings(request.backend_config),
        context_size=config.context_size if config.HasField("context_size") else None,
    )


def generation_params(request: pb.GenerateRequest, time_remaining: float | None) -> GenerationParams:
    messages = []
    for index, message in enumerate(request.messages):
        role = _ROLES.get(message.role)
        require(role is not None, f"messages[{index}].role", "role must be ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT")
        assert role is not None
        messages.append(ChatMessage(role, message.content, parts=_parts(message.parts, f"messages[{index}]")))
    options = request.options
    return GenerationParams(
        prompt=request.prompt or None,
        messages=tuple(messages),
        max_tokens=options.max_tokens if options.HasField("max_tokens") else DEFAULT_MAX_TOKENS,
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        top_k=options.top_k if options.HasField("top_k") else None,
        stop=tuple(options.stop_sequences),
        system=options.system if options.HasField("system") else None,
        seed=options.seed if options.HasField("seed") else None,
        timeout=time_remaining,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
    )


def _parts(parts: Sequence[cpb.ContentPart], where: str) -> tuple[ContentPart, ...]:
    out: list[ContentPart] = []
    for number, part in enumerate(parts):
        kind = part.WhichOneof("part")
        require(kind is not None, f"{where}.parts[{number}]", "a content part needs its text or its image")
        if kind == "text":
            out.append(TextPart(part.text))
            continue
        image = part.image
        source = image.WhichOneof("source")
        out.append(
            ImagePart(
                data=image.data if source == "data" else b"",
                media_type=image.media_type,
                url=image.url if source == "url" else "",
            )
        )
    return tuple(out)


def model_message(model: LoadedModel) -> pb.Model:
    return pb.Model(
        id=model.id,
        backend=_BACKEND_TYPES[model.backend],
        name=model.name,
        type=pb.MODEL_TYPE_TEXT_TO_TEXT,
        state=pb.MODEL_STATE_READY,
        context_size=model.info.context_size,
        capabilities=capabilities_message(model.info.capabilities),
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


def result_frame(result: GenerationResult) -> pb.GenerateResponse:
    finish = result.finish
    timings = pb.Timings(total=_duration(result.total))
    if result.time_to_first_token is not None:
        timings.time_to_first_token.CopyFrom(_duration(result.time_to_first_token))
    return pb.GenerateResponse(
        result=pb.GenerateResult(
            finish_reason=_FINISH_REASONS[finish.reason],
            usage=pb.Usage(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens),
            timings=timings,
            upstream_request_id=finish.upstream_request_id,
        )
    )
