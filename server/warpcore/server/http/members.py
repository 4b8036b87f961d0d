"""Which top-level members each request of the door takes: those read, those that change no answer (ignored), those
honoured only at their default, and those no backend here honours (refused, naming them); any other is refused as
unknown, as both vendors' APIs refuse a misspelt or unknown field rather than answer without it. The objects nested in
a request are checked the same way (inner_members.py)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.http.errors import THREAD
from warpcore.server.http.fields import UNKNOWN_FIELD, Json, at, unsupported

NO_PROMPT_CACHE = "no_prompt_cache"
"""warpcore's own member of each generation request, GenerationOptions.no_prompt_cache: true keeps the prompt out of
a local model's prompt cache."""


@dataclass(frozen=True)
class Members:
    read: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    """They change what the model can do or see, or where it runs."""
    defaults: Mapping[str, object] = field(default_factory=dict)
    """Honoured at this value only."""
    why: Mapping[str, str] = field(default_factory=dict)
    """What a refusal of a refused member tells the client to do instead, by its name."""

    @functools.cached_property
    def known(self) -> frozenset[str]:
        return frozenset((*self.read, *self.ignored, *self.refused, *self.defaults))

    def check(self, body: Json, path: str = "") -> None:
        """`body`, the object at `path` ("" the request itself)."""
        known = self.known
        for name, value in body.items():
            if name not in known and value is not None:  # null is unset, as the vendors' APIs read it
                where = at(path, name)
                raise InvalidArgumentError(
                    f"{where}: not a field of this request (misspelt, or one this server does not know)",
                    field=where,
                    reason=UNKNOWN_FIELD,
                )
        for name, default in self.defaults.items():
            value = body.get(name)
            # Of the default's own type too: JSON's true is no 1, which Python's == would take it for.
            if value is not None and (type(value) is not type(default) or value != default):
                raise unsupported(at(path, name), f"{name}={json.dumps(value)}")  # as the client wrote it
        for name in self.refused:
            if body.get(name) is not None:
                raise unsupported(at(path, name), self.why.get(name, name))


OPENAI_CHAT = Members(
    # `top_k` is the extension llama.cpp's and vLLM's servers take too.
    read=(
        *("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "seed"),
        *("presence_penalty", "frequency_penalty", "logit_bias", "tools", "tool_choice", "parallel_tool_calls"),
        *("response_format", "reasoning_effort", "verbosity", "logprobs", "top_logprobs", "stream", "stream_options"),
        *("modalities", "thinking", NO_PROMPT_CACHE),
    ),
    # `prediction` (Predicted Outputs) makes an answer come sooner, never another answer.
    ignored=(
        *("user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"),
        *("prompt_cache_retention", "prompt_cache_options", "prediction"),
    ),
    refused=("audio", "functions", "function_call", "web_search_options", "moderation"),
    defaults={"n": 1},
)
OPENAI_COMPLETIONS = Members(
    read=(
        *("model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "presence_penalty"),
        *("frequency_penalty", "logit_bias", "logprobs", "stream", "stream_options", NO_PROMPT_CACHE),
    ),
    ignored=("user",),
    refused=("suffix",),
    # One generation gives one choice of the prompt alone.
    defaults={"n": 1, "best_of": 1, "echo": False},
    why={"suffix": "suffix (text after the insertion point: only the prompt before it is generated from)"},
)
OPENAI_EMBEDDINGS = Members(read=("model", "input", "dimensions", "encoding_format"), ignored=("user",))
ANTHROPIC_MESSAGES = Members(
    # `output_format` is the structured-outputs beta's name of `output_config.format`.
    read=(
        *("model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k"),
        *("tools", "tool_choice", "thinking", "output_config", "output_format", "cache_control"),
        # Not the API's: the OpenAI dialect's sampling controls, for the backends that take them (fields.py).
        *("seed", "presence_penalty", "frequency_penalty", "logit_bias"),
        NO_PROMPT_CACHE,
    ),
    # Who pays (`billing_policy`, `fallback_credit_token`) changes no answer.
    ignored=("metadata", "service_tier", "speed", "diagnostics", "billing_policy", "fallback_credit_token"),
    refused=(
        *("container", "mcp_servers", "context_management", "inference_geo"),
        *("compaction", THREAD, "fallbacks"),
    ),
)
ANTHROPIC_COUNT_TOKENS = dataclasses.replace(
    ANTHROPIC_MESSAGES,
    # Nothing is generated: its API takes compaction and ignores it. It refuses max_tokens, but clients send
    # count_tokens what they send messages.create, and the count does not depend on it.
    read=tuple(name for name in ANTHROPIC_MESSAGES.read if name != "max_tokens"),
    ignored=(*ANTHROPIC_MESSAGES.ignored, "compaction", "max_tokens"),
    refused=tuple(name for name in ANTHROPIC_MESSAGES.refused if name != "compaction"),
)
_STATELESS = "(this server keeps no responses nor conversations: send the whole conversation in input)"
OPENAI_RESPONSES = Members(
    read=(
        *("model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice"),
        *("parallel_tool_calls", "text", "reasoning", "stream", "include", "top_logprobs", NO_PROMPT_CACHE),
    ),
    # Nothing is stored (`store`), whatever it asks: a stored response could only be read back by the members refused
    # below. `max_tool_calls` bounds calls of OpenAI's built-in tools, which never run here; `stream_options` asks
    # only for obfuscation padding.
    ignored=(
        *("user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"),
        *("prompt_cache_retention", "prompt_cache_options", "max_tool_calls", "stream_options"),
    ),
    refused=("previous_response_id", "conversation", "prompt", "context_management", "moderation"),
    # No backend here drops the input's first items to fit the context (`truncation: auto`); answering in the
    # background needs the response kept, to be fetched later.
    defaults={"truncation": "disabled", "background": False},
    why={
        "previous_response_id": f"previous_response_id {_STATELESS}",
        "conversation": f"conversation {_STATELESS}",
        "prompt": "a stored prompt by id (send its instructions and input)",
    },
)
OPENAI_INPUT_TOKENS = dataclasses.replace(
    OPENAI_RESPONSES,
    # What the openai SDK's responses.input_tokens.count sends: the prompt of a Responses request, without its
    # generation settings. `personality`, a style preset of OpenAI's own models, is honoured by no backend here.
    read=("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning"),
    ignored=(),
    refused=("previous_response_id", "conversation", "personality"),
    defaults={"truncation": "disabled"},
    why={**OPENAI_RESPONSES.why, "personality": "personality (a style preset of OpenAI's own models)"},
)
