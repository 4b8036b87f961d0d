"""Turns one generation's sampled llama.cpp tokens into text chunks and a finish reason."""

from __future__ import annotations

import codecs
from collections.abc import Callable

import llama_cpp

from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.sampling import Logprobs
from warpcore.server.adapters.llama.stop_scanner import StopScanner
from warpcore.server.core.domain import Finish, FinishReason, GenerationEvent, TextChunk
from warpcore.server.core.tokens import TokenLogprob, TopLogprob

Emit = Callable[[GenerationEvent | BaseException], None]


class TokenText:
    """Detokenizes incrementally (multi-byte characters may span tokens), holds back possible stop
    sequences, and decides when the generation is over. Called on the model's worker thread only."""

    def __init__(self, llama: llama_cpp.Llama, prompt: PreparedPrompt, emit: Emit) -> None:
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._prompt = prompt
        self._emit = emit
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._scanner = StopScanner((*prompt.user_stops, *prompt.template_stops))
        self.generated = 0
        self._pending: list[TokenLogprob] = []
        """Logprobs of the tokens whose text is held back, sent with the text that releases it."""

    def feed(self, token: int, logprobs: Logprobs | None = None) -> FinishReason | None:
        """Take one sampled token (and its logprobs when asked for); the finish reason once the generation must end,
        else None."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return FinishReason.STOP
        self.generated += 1
        piece = self._llama.detokenize([token])
        if logprobs is not None:
            self._pending.append(self._token_logprob(piece, logprobs))
        text, matched = self._scanner.feed(self._utf8.decode(piece))
        if text:
            self._emit(TextChunk(text, tuple(self._pending)))
            self._pending.clear()
        if matched is not None:
            return FinishReason.STOP_SEQUENCE if matched in self._prompt.user_stops else FinishReason.STOP
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
            tail = self._scanner.flush() + self._utf8.decode(b"", final=True)
            if tail:
                self._emit(TextChunk(tail, tuple(self._pending)))
        return Finish(reason, prompt_tokens=len(self._prompt.tokens), completion_tokens=self.generated)
