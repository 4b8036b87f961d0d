"""OpenAI's legacy Completions requests (`POST /v1/completions`) into domain generations of a plain prompt, as gRPC's
GenerateRequest.prompt asks for one: one prompt, one choice, the chat route's sampling controls; the legacy
`logprobs` is the domain's logprobs with that many top alternatives."""

from __future__ import annotations

from dataclasses import dataclass

from warpcore.server.core.domain import GenerationParams
from warpcore.server.http import openai_ignored
from warpcore.server.http.fields import Json, boolean, integer, number, refuse, sampling_controls, text
from warpcore.server.http.members import OPENAI_COMPLETIONS
from warpcore.server.http.openai_options import include_usage, stop_sequences

FIELD_NAMES = {"model_id": "model", "top_logprobs": "logprobs"}
"""Domain field paths as this route names them."""
MAX_LOGPROBS = 5
"""The most top alternatives the legacy `logprobs` asks for, as OpenAI's API bounds it."""


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    params: GenerationParams
    stream: bool
    include_usage: bool


def completion_request(body: Json, default_max_tokens: int) -> CompletionRequest:
    OPENAI_COMPLETIONS.check(body)
    openai_ignored.check_user(body)
    stops, usage_asked = stop_sequences(body), include_usage(body)
    top = integer(body, "logprobs")
    if top is not None and not 0 <= top <= MAX_LOGPROBS:
        raise refuse("logprobs", f"must be between 0 and {MAX_LOGPROBS}")
    max_tokens = integer(body, "max_tokens")
    params = GenerationParams(
        prompt=_prompt(body.get("prompt")),
        messages=(),
        max_tokens=default_max_tokens if max_tokens is None else max_tokens,
        max_tokens_defaulted=max_tokens is None,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        top_k=integer(body, "top_k"),
        stop=stops,
        **sampling_controls(body),
        logprobs=top is not None,
        top_logprobs=top or 0,
    )
    return CompletionRequest(
        model=text(body, "model", required=True) or "",
        params=params,
        stream=boolean(body, "stream") is True,
        include_usage=usage_asked,
    )


def _prompt(prompt: object) -> str:
    """The one prompt: a string, or an array of one string (what the openai SDK sends for a list). Token ids would
    be one model's tokens, and several prompts several choices, which a generation does not give."""
    if prompt is None:
        raise refuse("prompt", "is required")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse("prompt", "must be a string or an array of one string (token ids and several prompts are not)")
    if not prompt:  # as gRPC's Generate refuses an empty prompt
        raise refuse("prompt", "must not be empty")
    return prompt
