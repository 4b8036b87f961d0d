"""Turns one generation's sampled llama.cpp tokens into text chunks and a finish reason."""

from __future__ import annotations

import codecs
from collections.abc import Callable

import llama_cpp

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.sampling import Logprobs
from warpcore.server.adapters.llama.stop_scanner import StopScanner
from warpcore.server.adapters.llama.tool_calls import ToolCallText
from warpcore.server.core.domain import (
    Finish,
    FinishReason,
    GenerationEvent,
    TextChunk,
)
from warpcore.server.core.tokens import TokenLogprob, TopLogprob
from warpcore.server.core.tooling import (
    ToolCall,
)

Emit = Callable[[GenerationEvent | BaseException], None]


class TokenText:
    """Detokenizes incrementally (multi-byte characters may span tokens), holds back possible stop
    sequences, and decides when the generation is over. Called on the model's worker thread only."""

    def __init__(
        self, llama: llama_cpp.Llama, prompt: PreparedPrompt, emit: Emit, constraint: Constraint | None = None
    ) -> None:
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._prompt = prompt
        self._emit = emit
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._scanner = StopScanner((*prompt.user_stops, *prompt.template_stops))
        self._calls = None
        if constraint is not None and constraint.tool_calls:
            self._calls = ToolCallText(emit, calls_only=not constraint.lazy)
        self.generated = 0
        self._stop_sequence = ""
        self._pending: list[TokenLogprob] = []
        """Logprobs of the tokens whose text is held back, sent with the text that releases it."""

    def feed(self, token: int, logprobs: Logprobs | None = None) -> FinishReason | None:
        """Take one sampled token (and its logprobs when asked for); the finish reason once the generation must end,
        else None."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return FinishReason.STOP
        self.generated += 1
        # With tools, special tokens are text too: some templates' `<tool_call>` is one.
        piece = self._llama.detokenize([token], special=self._calls is not None)
        if logprobs is not None:
            self._pending.append(self._token_logprob(piece, logprobs))
        text, matched = self._scanner.feed(self._utf8.decode(piece))
        self._out(text)
        if self._calls is not None and self._calls.repeated:
            return FinishReason.STOP  # the calls are over (ToolCallText): the answer is its calls
        if matched is not None:
            if matched not in self._prompt.user_stops:
                return FinishReason.STOP  # the chat template's end of turn
            self._stop_sequence = matched
            return FinishReason.STOP_SEQUENCE
        if self.generated >= self._prompt.budget:
            return FinishReason.LENGTH
        return None

    def _token_logprob(self, piece: bytes, logprobs: Logprobs) -> TokenLogprob:
        logprob, top = logprobs
        alternatives = tuple(TopLogprob(self._llama.detokenize([token]), value) for token, value in top)
        return TokenLogprob(piece, logprob, alternatives)

    def finish(self, reason: FinishReason) -> Finish:
        """Emit what was held back (unless a stop sequence cut it) and describe the end."""
        if reason is not FinishReason.STOP_SEQUENCE:
            self._out(self._scanner.flush() + self._utf8.decode(b"", final=True))
        calls: tuple[ToolCall, ...] = ()
        if self._calls is not None:
            self._calls.flush(cut=reason is FinishReason.LENGTH)
            calls = tuple(self._calls.calls)
            reason = FinishReason.TOOL_CALLS if calls and reason is FinishReason.STOP else reason
        return Finish(
            reason,
            prompt_tokens=len(self._prompt.tokens),
            completion_tokens=self.generated,
            tool_calls=calls,
            stop_sequence=self._stop_sequence,
        )

    def _out(self, text: str) -> None:
        if not text:
            return
        if self._calls is not None:
            self._calls.feed(text)  # a call's arguments carry no logprobs
        else:
            self._emit(TextChunk(text, tuple(self._pending)))
        self._pending.clear()
