"""Turns one generation's sampled llama.cpp tokens into text chunks and a finish reason."""

from __future__ import annotations

from collections.abc import Callable

import llama_cpp

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.prompt import PreparedPrompt
from warpcore.server.adapters.llama.sampling import Logprobs
from warpcore.server.adapters.llama.tool_calls import ToolCallText
from warpcore.server.core.domain import (
    Finish,
    FinishReason,
    GenerationEvent,
    TextChunk,
)
from warpcore.server.core.stop_scanner import StopScanner
from warpcore.server.core.token_characters import TokenCharacters
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
        self._characters = TokenCharacters()
        # Stop sequences, the request's and the template's end-of-turn texts, are looked for in the answer's text
        # alone, never in what a grammar writes, which is whole or invalid: a response format's JSON value and a tool
        # call (its opening marker included) end as the grammar ends them, with the end-of-generation token it allows
        # once complete (a constant "</s>" in them is text, not an end). With tools, the text around the calls is
        # told apart from them by ToolCallText, which looks for the stops in the answer's text it finds.
        stops = (*prompt.user_stops, *prompt.template_stops)
        self._scanner = StopScanner(stops if constraint is None else ())
        # Under a grammar, control tokens are text too: the grammar reads every token by its text (a constant "<s>"
        # may come as the control token), and some templates' `<tool_call>` is one.
        self._special = constraint is not None
        self._calls = None
        if constraint is not None and constraint.tool_calls:
            self._calls = ToolCallText(emit, StopScanner(stops), calls_only=not constraint.lazy)
        self.generated = 0
        self._stop_sequence = ""
        self._pending: list[tuple[TokenLogprob, int, int | None]] = []
        """Logprobs of the tokens whose text is held back, sent with the text that releases it; each with the answer's
        character its first byte lies in, and where its text ends (None for a token that ends inside a character)."""
        self._sent = 0  # characters of the answer sent so far
        self._released = ""
        """With logprobs: text past the stop scanner that ends inside a token, sent with the rest of that token."""

    def feed(self, token: int, logprobs: Logprobs | None = None) -> FinishReason | None:
        """Take one sampled token (and its logprobs when asked for); the finish reason once the generation must end,
        else None."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return FinishReason.STOP
        self.generated += 1
        piece = self._llama.detokenize([token], special=self._special)
        decoded, start = self._characters.decode(piece)
        text, matched = self._scanner.feed(decoded)
        if logprobs is None:
            self._out(text)
        else:
            ends = None if self._characters.inside else self._characters.characters
            self._pending.append((self._token_logprob(piece, logprobs), start, ends))
            self._released += text
            self._out_whole_tokens()
        if self._calls is not None:
            if self._calls.repeated:
                return FinishReason.STOP  # the calls are over (ToolCallText): the answer is its calls
            matched = self._calls.stop
        if matched is not None:
            return self._stopped_by(matched)
        if self.generated >= self._prompt.budget:
            return FinishReason.LENGTH
        return None

    def _stopped_by(self, matched: str) -> FinishReason:
        if matched not in self._prompt.user_stops:
            return FinishReason.STOP  # the chat template's end of turn
        self._stop_sequence = matched
        return FinishReason.STOP_SEQUENCE

    def _token_logprob(self, piece: bytes, logprobs: Logprobs) -> TokenLogprob:
        logprob, top = logprobs
        alternatives = tuple(TopLogprob(self._llama.detokenize([token]), value) for token, value in top)
        return TokenLogprob(piece, logprob, alternatives)

    def finish(self, reason: FinishReason) -> Finish:
        """Emit what was held back (unless a stop sequence cut it) and describe the end."""
        rest, self._released = self._released, ""
        if reason is not FinishReason.STOP_SEQUENCE:
            rest += self._scanner.flush() + self._characters.final()
            self._out(rest)
        else:  # the tokens that complete the stop sequence are no part of the answer
            self._out(rest, self._tokens_before(self._sent + len(rest)))
            self._pending.clear()
        if self._pending and self._calls is None:
            # Tokens that spell nothing (a control token the model sampled) at the answer's end: counted, so scored.
            self._emit(TextChunk("", tuple(logprob for logprob, _, _ in self._pending)))
            self._pending.clear()
        calls: tuple[ToolCall, ...] = ()
        if self._calls is not None:
            self._calls.flush(cut=reason is FinishReason.LENGTH)
            if reason is FinishReason.STOP and self._calls.stop is not None:
                reason = self._stopped_by(self._calls.stop)  # in the text held back as a call's possible marker
            calls = tuple(self._calls.calls)
            # Only a call cut before its arguments were whole is a cut: after them, in the closing line the grammar
            # writes alone, between calls or in a repeat (a base model's further calls repeat), the answer is its calls.
            whole = reason is FinishReason.LENGTH and not self._calls.unfinished
            reason = FinishReason.TOOL_CALLS if calls and (reason is FinishReason.STOP or whole) else reason
        return Finish(
            reason,
            prompt_tokens=len(self._prompt.tokens),
            completion_tokens=self.generated,
            tool_calls=calls,
            stop_sequence=self._stop_sequence,
            context_window_exceeded=reason is FinishReason.LENGTH and self._prompt.fills_context,
        )

    def _out_whole_tokens(self) -> None:
        """Send the released text up to the end of the last token it holds whole, with those tokens' logprobs: each
        chunk's tokens spell its text, although a possible stop sequence held back may end inside a token."""
        released_end = self._sent + len(self._released)
        whole, cut = 0, self._sent
        for index, (_, _, ends) in enumerate(self._pending):
            if ends is None:
                continue
            if ends > released_end:
                break
            whole, cut = index + 1, ends
        if whole:
            text, self._released = self._released[: cut - self._sent], self._released[cut - self._sent :]
            self._out(text, whole)

    def _tokens_before(self, end: int) -> int:
        """How many pending tokens begin before the answer's character `end`, where a stop sequence begins: those
        whose first byte lies in an earlier character, which may be bytes of one never finished (U+FFFD), unlike
        those of the stop sequence's first character."""
        return sum(start < end for _, start, _ in self._pending)

    def _out(self, text: str, tokens: int | None = None) -> None:
        """Send `text` with the logprobs of the first `tokens` pending tokens (all of them by default)."""
        if not text:
            return
        self._sent += len(text)
        taken = self._pending[:tokens]
        del self._pending[:tokens]
        if self._calls is not None:
            self._calls.feed(text)  # a call's arguments carry no logprobs
        else:
            self._emit(TextChunk(text, tuple(logprob for logprob, _, _ in taken)))
