"""The rules every request obeys, whichever front door it came through; a refusal names the field by its path in
the domain request (`max_tokens`, `settings.threads`), which each front door maps to its own field names."""

from __future__ import annotations

import dataclasses
import math

from warpcore._keep_alive import MAX_KEEP_ALIVE_SECONDS
from warpcore._sampling_ranges import MAX_PENALTY, MAX_TEMPERATURE
from warpcore.server.adapters.redaction import holds_key
from warpcore.server.core.bounds import (
    BETA_NAME,
    MAX_BETAS,
    MAX_BIASED_TOKENS,
    MAX_CONTEXT_SIZE,
    MAX_EMBED_DIMENSIONS,
    MAX_EMBED_INPUTS,
    MAX_LOGIT_BIAS,
    MAX_SEED,
    MAX_STOP_SEQUENCE_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TOP_K,
    MAX_TOP_LOGPROBS,
    MIN_CONTEXT_SIZE,
    SMALLEST_MESSAGE_BYTES,
    VERBOSITY_LEVELS,
)
from warpcore.server.core.cache_rules import check_cache_breakpoints
from warpcore.server.core.domain import (
    ApiSettings,
    BackendKind,
    GenerationParams,
    LoadSpec,
    LocalSettings,
    Role,
)
from warpcore.server.core.embeddings import EmbedParams
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.model_ids import canonical_model_id, file_id, model_id_for, relative_model_path
from warpcore.server.core.part_rules import check_parts
from warpcore.server.core.rules import check_name, require
from warpcore.server.core.settings_rules import check_settings
from warpcore.server.core.tool_rules import check_conversation, check_output, check_tools


def check_id(value: str, field: str, key: str | None = None) -> str:
    """A required id: non-empty, a name (`check_name`), holding no API key (`key`, or a key's shape): callers see it."""
    require(bool(value), field, f"{field} is required")
    require(not holds_key(value, key), field, f"{field} looks like an API key; keys never go in ids or names")
    return check_name(value, field)


def check_revision(value: str) -> str:
    """A hub revision (branch, tag or commit; a branch may hold slashes, "refs/pr/1"): an id whose parts are git ref
    name parts, none empty or starting with a dot, so that it names a revision and never moves the URL it goes in
    ("." and ".." would)."""
    check_id(value, "revision")
    parts = value.split("/")
    require(
        all(part and not part.startswith(".") for part in parts) and ".." not in value,
        "revision",
        "revision must be a branch, tag or commit: parts between slashes, none empty or starting with a dot, and"
        " no '..'",
    )
    return value


def checking_size(params: GenerationParams) -> int:
    """About the characters of JSON that checking `params` reads, as CHECK_ON_THREAD_BYTES counts them: its tool-call
    arguments, which it parses, and each message's."""
    arguments = sum(len(call.arguments) for message in params.messages for call in message.tool_calls)
    return arguments + SMALLEST_MESSAGE_BYTES * len(params.messages)


def check_generation(params: GenerationParams, max_tokens_limit: int) -> None:
    require((params.prompt is not None) != bool(params.messages), "prompt", "set exactly one of prompt and messages")
    require(
        not params.messages or any(message.role is not Role.SYSTEM for message in params.messages),
        "messages",
        "messages must hold at least one user or assistant message",
    )
    check_parts(params)
    if params.continue_last:
        require(
            bool(params.messages),
            "continue_last_message",
            "continue_last_message continues the last message of messages; a prompt has none",
        )
        last = params.messages[-1]
        require(
            last.role is Role.ASSISTANT,
            "continue_last_message",
            "continue_last_message continues a last assistant message, and messages end with another: unset it, or"
            " end messages with the assistant message to continue",
        )
        require(
            not last.tool_calls,
            "messages",
            "only a last assistant message of text can be continued; end with it, or with a user message",
        )
    require(
        1 <= params.max_tokens <= max_tokens_limit, "max_tokens", f"max_tokens must be between 1 and {max_tokens_limit}"
    )
    if params.temperature is not None:
        require(
            math.isfinite(params.temperature) and 0 <= params.temperature <= MAX_TEMPERATURE,
            "temperature",
            f"temperature must be between 0 and {MAX_TEMPERATURE:g}",
        )
    if params.top_p is not None:
        require(0 < params.top_p <= 1, "top_p", "top_p must be greater than 0 and at most 1")
    if params.top_k is not None:
        require(1 <= params.top_k <= MAX_TOP_K, "top_k", f"top_k must be between 1 and {MAX_TOP_K}")
    if params.seed is not None:
        require(0 <= params.seed <= MAX_SEED, "seed", f"seed must be between 0 and {MAX_SEED}")
    biased = len(params.logit_bias)
    require(biased <= MAX_BIASED_TOKENS, "logit_bias", f"logit_bias holds at most {MAX_BIASED_TOKENS} tokens")
    require(
        all(math.isfinite(bias) and abs(bias) <= MAX_LOGIT_BIAS for _, bias in params.logit_bias),
        "logit_bias",
        f"each logit_bias must be between {-MAX_LOGIT_BIAS:g} and {MAX_LOGIT_BIAS:g}",
    )
    for name, penalty in params.penalties.items():
        require(
            math.isfinite(penalty) and abs(penalty) <= MAX_PENALTY,
            name,
            f"{name} must be between {-MAX_PENALTY:g} and {MAX_PENALTY:g}",
        )
    require(len(params.stop) <= MAX_STOP_SEQUENCES, "stop", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    require(all(params.stop), "stop", "stop must not hold an empty sequence")
    require(
        all(len(stop) <= MAX_STOP_SEQUENCE_CHARS for stop in params.stop),
        "stop",
        f"each stop sequence must be at most {MAX_STOP_SEQUENCE_CHARS} characters",
    )
    require(
        0 <= params.top_logprobs <= MAX_TOP_LOGPROBS,
        "top_logprobs",
        f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}",
    )
    require(params.logprobs or not params.top_logprobs, "top_logprobs", "top_logprobs needs logprobs set to true")
    levels = ", ".join(VERBOSITY_LEVELS)
    require(params.verbosity in (None, *VERBOSITY_LEVELS), "verbosity", f"verbosity must be one of {levels}")
    require(len(params.anthropic_betas) <= MAX_BETAS, "anthropic_betas", f"at most {MAX_BETAS} anthropic_betas")
    require(
        all(BETA_NAME.fullmatch(beta) for beta in params.anthropic_betas),
        "anthropic_betas",
        "a beta's name is 1 to 64 characters of a-z, 0-9 and '-', as interleaved-thinking-2025-05-14",
    )
    check_conversation(params.messages, check_tools(params))
    check_output(params, max_tokens_limit)
    check_cache_breakpoints(params)


def check_embedding(params: EmbedParams) -> None:
    require(1 <= len(params.inputs) <= MAX_EMBED_INPUTS, "inputs", f"give between 1 and {MAX_EMBED_INPUTS} inputs")
    for index, text in enumerate(params.inputs):
        require(bool(text), f"inputs[{index}]", f"inputs[{index}] is empty; every input needs text")
    if params.dimensions is not None:
        require(
            1 <= params.dimensions <= MAX_EMBED_DIMENSIONS,
            "dimensions",
            f"dimensions must be between 1 and {MAX_EMBED_DIMENSIONS}",
        )


def check_model_id(value: str, key: str | None = None) -> str:
    """A model id as a request names it, in its one spelling: each spelling of a GGUF file's name is one id."""
    return canonical_model_id(check_id(value, "model_id", key))


def check_keep_alive(seconds: float) -> None:
    """The range of every keep_alive (a LoadModel's, the config file's, the server's --keep-alive)."""
    require(
        seconds == math.inf or 0 <= seconds <= MAX_KEEP_ALIVE_SECONDS,
        "keep_alive",
        f"keep_alive must be between 0 and {MAX_KEEP_ALIVE_SECONDS} seconds, or forever",
    )


def check_load(spec: LoadSpec) -> LoadSpec:
    """`spec` checked, with its id, and the GGUF files a local model names, in their one spelling: loaded again
    under another spelling, a model is the same model, not a second copy."""
    key = spec.settings.api_key if isinstance(spec.settings, ApiSettings) else None
    check_id(spec.name, "model", key)
    model_id = check_model_id(spec.model_id, key)
    if spec.context_size is not None:
        require(
            MIN_CONTEXT_SIZE <= spec.context_size <= MAX_CONTEXT_SIZE,
            "context_size",
            f"context_size must be between {MIN_CONTEXT_SIZE} and {MAX_CONTEXT_SIZE} tokens",
        )
    if spec.keep_alive is not None:
        require(
            not spec.backend.hosted,
            "keep_alive",
            "keep_alive applies to local models only: a hosted model stays loaded until unloaded",
        )
        check_keep_alive(spec.keep_alive)
    check_settings(spec.settings, spec.backend)
    _check_kind(spec)
    _check_file_id(spec, model_id)
    if spec.backend.hosted:  # the provider's model name, passed on as given
        api = spec.settings
        if isinstance(api, ApiSettings) and api.base_url:  # "…/v1/" is "…/v1" to the SDKs, and the same model
            api = dataclasses.replace(api, base_url=api.base_url.rstrip("/"))
        return dataclasses.replace(spec, model_id=model_id, settings=api)
    settings = spec.settings
    if isinstance(settings, LocalSettings) and settings.mmproj is not None:
        settings = dataclasses.replace(settings, mmproj=canonical_model_id(settings.mmproj))
    return dataclasses.replace(spec, model_id=model_id, name=canonical_model_id(spec.name), settings=settings)


def _check_kind(spec: LoadSpec) -> None:
    """A kind of model the backend has none of (the Anthropic API has no embedding models), refused with the
    request's other faults: before the server looks for a key or asks the API, neither of which could make it work."""
    embeds = spec.settings is not None and spec.settings.embedding
    if embeds and spec.backend is BackendKind.ANTHROPIC:
        raise InvalidArgumentError(
            "the Anthropic API has no embedding models: load the model as a text model, or an embedding model on"
            " the openai or llama_cpp backend",
            field="model_type",
            reason="EMBEDDINGS_UNSUPPORTED",
            metadata={"provider": spec.backend.value},
        )


def _check_file_id(spec: LoadSpec, model_id: str) -> None:
    """An id spelled as a GGUF file's name (`model_id`, in its one spelling) stands for that file, whether or not it
    exists: ListModels lists the file by it, and LoadModel and calls reach the file by it. So it names that file's
    model only; another model under it would hide the file (its LoadModel ALREADY_EXISTS) and answer calls meant
    for it. A local model's name is checked first: its own fault is the one to fix."""
    named = file_id(model_id)
    if named is None or (spec.backend.hosted and named == file_id(spec.name)):
        # A hosted model under its own name, in any of its spellings, keeps it, as the first release's clients load
        # one (model_id unset): a compatible server may name a model as a file (llama.cpp's server, by its GGUF's
        # path). Unless that file is under MODELS_PATH: Engine.load, which may look, refuses it then.
        return
    loads = None if spec.backend.hosted else model_id_for(relative_model_path(spec.name))
    if named != loads:
        raise InvalidArgumentError(
            f"model_id {spec.model_id!r} names another model file under MODELS_PATH ({named!r}), which only that"
            " file may be loaded under: choose a model_id that is no file's name, or load that file",
            field="model_id",
            reason="MODEL_ID_NAMES_ANOTHER_FILE",
        )
