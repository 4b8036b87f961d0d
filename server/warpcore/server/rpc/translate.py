"""Protobuf requests to domain values and domain values to protobuf responses; the request's rules are the core's
(core/validation.py): this module only checks what the wire shape itself can get wrong (enum values, durations)."""

from __future__ import annotations

import dataclasses
import re

from google.protobuf import duration_pb2

from warpcore.server.core.domain import (
    ApiSettings,
    BackendSettings,
    Finish,
    FinishReason,
    GenerationParams,
    LoadSpec,
    LocalSettings,
    NumaStrategy,
)
from warpcore.server.core.embeddings import Pooling
from warpcore.server.core.engine import GenerationResult
from warpcore.server.core.rules import require
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.rpc import tools_translate
from warpcore.server.rpc.translate_extras import as_written, cache_breakpoint
from warpcore.server.rpc.translate_models import backend_kind, duration_seconds, keep_alive
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

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
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    FinishReason.PAUSED: pb.FINISH_REASON_PAUSED,
}
_LOCAL = "backend_config.local"
FIELD_PATHS = {
    "context_size": "model_config.context_size",
    "keep_alive": "model_config.keep_alive",
    "keep_alive.idle": "model_config.keep_alive.idle",
    "max_tokens": "options.max_tokens",
    "temperature": "options.temperature",
    "top_p": "options.top_p",
    "top_k": "options.top_k",
    "stop": "options.stop_sequences",
    "seed": "options.seed",
    "presence_penalty": "options.presence_penalty",
    "frequency_penalty": "options.frequency_penalty",
    "logit_bias": "options.logit_bias",
    "system": "options.system",
    "system_cache_breakpoint": "options.system_cache_breakpoint",
    "verbosity": "options.verbosity",
    "anthropic_betas": "options.anthropic_betas",
    "reasoning": "options.reasoning",
    "logprobs": "options.logprobs",
    "top_logprobs": "options.top_logprobs",
    "settings": "backend_config",
    **{f"settings.{name}": f"backend_config.api.{name}" for name in ("api_key", "base_url", "organization", "timeout")},
    **{
        f"settings.{name}": f"{_LOCAL}.{name}"
        for name in ("threads", "parallel", "gpu_layers", "use_gpu", "prompt_cache_tokens")
    },
    **{f"settings.{name}": f"{_LOCAL}.llama_cpp.{name}" for name in ("use_mmap", "use_mlock", "chat_format")},
    "settings.numa": f"{_LOCAL}.llama_cpp.numa_strategy",
    "settings.embedding": f"{_LOCAL}.llama_cpp.embedding",
    "settings.pooling": f"{_LOCAL}.llama_cpp.pooling",
    "settings.mmproj": f"{_LOCAL}.llama_cpp.mmproj",
    "dimensions": "options.dimensions",
    "normalize": "options.normalize",
    "truncate": "options.truncate",
    "response_format": "options.response_format",
    "response_format.name": "options.response_format.name",
    "response_format.schema": "options.response_format.schema_json",
    "reasoning.effort": "options.reasoning.effort",
    "reasoning.budget_tokens": "options.reasoning.budget_tokens",
    "reasoning.adaptive": "options.reasoning.adaptive",
}
"""Domain field paths (core/validation.py) to the protobuf field paths a BadRequest names."""
_TOOL_PARAMETERS = re.compile(r"(tools\[\d+\])\.parameters")


def field_path(domain_field: str) -> str:
    """The protobuf path of a domain field; indexed paths (`messages[2].tool_calls[0].id`) are the same in both but
    for a tool's schema, which travels as JSON text."""
    return FIELD_PATHS.get(domain_field) or _TOOL_PARAMETERS.sub(r"\1.parameters_json", domain_field)


def backend_settings(config: pb.BackendConfig) -> BackendSettings | None:
    kind = config.WhichOneof("config")
    if kind == "api":
        api = config.api
        timeout = duration_seconds(api.timeout, "settings.timeout") if api.HasField("timeout") else None
        return ApiSettings(
            api_key=api.api_key if api.HasField("api_key") else None,
            organization=api.organization if api.HasField("organization") else None,
            base_url=api.base_url if api.HasField("base_url") else None,
            timeout=timeout,
            unlisted=api.unlisted,
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
            prompt_cache_tokens=local.prompt_cache_tokens if local.HasField("prompt_cache_tokens") else None,
        )
    return None


_MODEL_TYPES = (pb.MODEL_TYPE_UNSPECIFIED, pb.MODEL_TYPE_TEXT_TO_TEXT, pb.MODEL_TYPE_TEXT_TO_EMBEDDING)


def load_spec(request: pb.LoadModelRequest) -> LoadSpec:
    backend = backend_kind(request.backend)
    require(
        request.model_type in _MODEL_TYPES,
        "model_type",
        "model_type must be MODEL_TYPE_TEXT_TO_TEXT or MODEL_TYPE_TEXT_TO_EMBEDDING",
    )
    settings = backend_settings(request.backend_config)
    if request.model_type != pb.MODEL_TYPE_UNSPECIFIED:
        # Named, the type settles what the settings leave unset: for llama.cpp, never the embedding model a request
        # leaving llama_cpp.embedding unset would get when one is loaded under the id; for a hosted API, whatever
        # its name says (a compatible server names its embedding models as it pleases).
        settings = settings or (ApiSettings() if backend.hosted else LocalSettings())
        embeds = request.model_type == pb.MODEL_TYPE_TEXT_TO_EMBEDDING
        require(
            not embeds or settings.embedding is not False,
            "model_type",
            "MODEL_TYPE_TEXT_TO_EMBEDDING loads the model for embeddings: leave llama_cpp.embedding unset or true",
        )
        if settings.embedding is None:
            settings = dataclasses.replace(settings, embedding=embeds)
    config = request.model_config
    return LoadSpec(
        model_id=request.model_id or request.model,
        backend=backend,
        name=request.model,
        settings=settings,
        context_size=config.context_size if config.HasField("context_size") else None,
        keep_alive=keep_alive(config.keep_alive),
    )


def generation_params(
    request: pb.GenerateRequest, time_remaining: float | None, default_max_tokens: int
) -> GenerationParams:
    messages = [tools_translate.chat_message(index, message) for index, message in enumerate(request.messages)]
    options = request.options
    return GenerationParams(
        prompt=request.prompt or None,
        messages=tuple(messages),
        max_tokens=options.max_tokens if options.HasField("max_tokens") else default_max_tokens,
        max_tokens_defaulted=not options.HasField("max_tokens"),
        temperature=as_written(options.temperature) if options.HasField("temperature") else None,
        top_p=as_written(options.top_p) if options.HasField("top_p") else None,
        top_k=options.top_k if options.HasField("top_k") else None,
        stop=tuple(options.stop_sequences),
        system=options.system if options.HasField("system") else None,
        system_cache=cache_breakpoint(options.system_cache_breakpoint, "system_cache_breakpoint"),
        seed=options.seed if options.HasField("seed") else None,
        presence_penalty=as_written(options.presence_penalty) if options.HasField("presence_penalty") else None,
        frequency_penalty=as_written(options.frequency_penalty) if options.HasField("frequency_penalty") else None,
        logit_bias=tuple(sorted(options.logit_bias.items())),
        timeout=time_remaining,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
        cache_prompt=not options.no_prompt_cache,
        tools=tools_translate.tools(request),
        tool_choice=tools_translate.tool_choice(request),
        parallel_tool_calls=request.parallel_tool_calls if request.HasField("parallel_tool_calls") else True,
        response_format=tools_translate.response_format(options),
        reasoning=tools_translate.reasoning(options),
        verbosity=_verbosity(options.verbosity),
        anthropic_betas=tuple(options.anthropic_betas),
        continue_last=request.continue_last_message if request.HasField("continue_last_message") else None,
    )


_VERBOSITY: dict[int, str] = {
    value: name.removeprefix("VERBOSITY_").lower() for name, value in pb.Verbosity.items() if value
}


def _verbosity(value: int) -> str | None:
    """The level's name; an unknown value is left for validation to refuse by name."""
    return None if value == pb.VERBOSITY_UNSPECIFIED else _VERBOSITY.get(value, str(value))


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
            usage=_usage(finish),
            timings=timings,
            upstream_request_id=finish.upstream_request_id,
            tool_calls=[
                tools_pb2.ToolCall(id=call.id, name=call.name, arguments=call.arguments) for call in finish.tool_calls
            ],
            stop_sequence=finish.stop_sequence,
            context_window_exceeded=finish.context_window_exceeded,
        )
    )


def _usage(finish: Finish) -> pb.Usage | None:
    """None, left unset, when the backend did not report the usage: a client unaware of it reads the zeros it read
    before."""
    counts = finish.counts()
    if counts is None:
        return None
    return pb.Usage(
        prompt_tokens=counts[0],
        completion_tokens=counts[1],
        cached_prompt_tokens=finish.cached_prompt_tokens,
        cache_creation_tokens=finish.cache_creation_tokens,
        reasoning_tokens=finish.reasoning_tokens or 0,
    )


def prompt_usage(prompt: PromptUsage) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=prompt.prompt_tokens,
        cached_prompt_tokens=prompt.cached_prompt_tokens,
        cache_creation_tokens=prompt.cache_creation_tokens,
    )
