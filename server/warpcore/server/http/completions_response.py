"""Domain generations as OpenAI's legacy Completions: the whole `text_completion`, or chunks of the same object each
with a piece of the text, as the openai SDK's `completions.create` parses both; log-probabilities in the legacy shape
(`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from warpcore.server.core.domain import Finish, TextChunk
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.token_characters import TokenCharacters
from warpcore.server.core.tokens import PromptUsage, TokenLogprob
from warpcore.server.http.collect import Collected
from warpcore.server.http.completions_request import FIELD_NAMES
from warpcore.server.http.errors import openai_error
from warpcore.server.http.openai_response import FINISH_REASONS, ChunkStream, header, single, usage_of
from warpcore.server.http.sse import DONE, SLOT, event, fill, template

if TYPE_CHECKING:
    from warpcore.server.http.dialects import Call

KIND = "text_completion"
ID_PREFIX = "cmpl"
_TEXTS = ("text", "refusal")
"""The parts that make a completion's text: it has no other place for the words in which a model declines."""


def legacy_logprobs(tokens: Sequence[TokenLogprob], offsets: TokenCharacters) -> dict[str, Any]:
    """The tokens' log-probabilities as the legacy API gives them: lists of the tokens, their log-probabilities, the
    alternatives at each place by their text (the more likely kept where two tokens read the same), and their
    offsets in the text: the character each one's first byte lies in (`offsets` has decoded the tokens before)."""
    alternatives = []
    for token in tokens:
        by_text: dict[str, float] = {}
        for top in token.top:
            by_text.setdefault(top.text, single(top.logprob))
        alternatives.append(by_text)
    return {
        "tokens": [token.text for token in tokens],
        "token_logprobs": [single(token.logprob) for token in tokens],
        "top_logprobs": alternatives,
        "text_offset": [offsets.decode(token.token)[1] for token in tokens],
    }


def _choice(text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}


def completion(call: Call, collected: Collected) -> dict[str, Any]:
    assert collected.result is not None
    parts = [part for part in collected.parts if part.kind in _TEXTS]
    tokens = [token for part in parts for token in part.logprobs]
    logprobs = None if collected.logprobs is None else legacy_logprobs(tokens, TokenCharacters())
    choice = _choice("".join(part.text for part in parts), logprobs, FINISH_REASONS[collected.reason])
    return {**header(call.model, KIND, ID_PREFIX), "choices": [choice], "usage": usage_of(collected.result.finish)}


def error(problem: WarpcoreError, _request_id: str) -> dict[str, Any]:
    return openai_error(problem, FIELD_NAMES)


class CompletionStream(ChunkStream):
    """The events of one streamed completion: a chunk per piece of text (with its tokens' log-probabilities when
    asked for), a last chunk with no text and the finish reason, the usage chunk when asked for, then [DONE]."""

    def __init__(self, call: Call) -> None:
        super().__init__(header(call.model, KIND, ID_PREFIX), call.include_usage, FIELD_NAMES)
        self._offsets = TokenCharacters()
        self._text = template(self._chunk(SLOT))

    def _chunk(self, text: str, logprobs: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
        return {**self._header, "choices": [_choice(text, logprobs, finish)]}

    def start(self, prompt: PromptUsage | None) -> bytes:
        """Nothing: the prompt's usage has no place before the usage chunk at the end."""
        return b""

    def feed(self, output: GenerationOutput) -> bytes:
        """A piece of text; reasoning (a hosted reasoning model's) has no place in a completion."""
        if not isinstance(output, TextChunk):
            return b""
        if output.logprobs:
            return event(self._chunk(output.text, legacy_logprobs(output.logprobs, self._offsets)))
        return fill(self._text, output.text)

    def end(self, finish: Finish) -> bytes:
        return event(self._chunk("", finish=FINISH_REASONS[finish.reason])) + self._usage(finish) + DONE
