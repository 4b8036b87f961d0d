"""Tokenize long prompts in pieces, so that the work can stop early and never grows quadratically."""

from __future__ import annotations

import threading

import llama_cpp

# llama.cpp's tokenizer is quadratic on byte-fallback text (250 kB of control characters: ~9 s in one call,
# ~0.4 s in pieces of this size), and a call cannot be interrupted.
PIECE_BYTES = 8192
_PROBE = b"the quick brown fox jumps over the lazy dog"


class PromptTokenizer:
    """Cuts a long prompt at spaces and tokenizes the pieces one by one, giving the tokens the whole text
    would give. Tokenizers that add a space before every text (SentencePiece's add_space_prefix) take the
    piece after a cut without its space; others take it with the space. Which one applies is probed once;
    a tokenizer for which neither gives the same tokens always gets whole prompts."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama
        self._space_kept: bool | None = None
        whole = self._tokens(_PROBE, add_bos=False)
        for keep in (True, False):
            if self._pieces_tokens(_PROBE, add_bos=False, keep_space=keep, piece_bytes=8) == whole:
                self._space_kept = keep
                break

    def tokenize(self, text: bytes, *, add_bos: bool, limit: int, stop: threading.Event) -> list[int]:
        """The tokens of `text`; stops early (with a shorter list) once past `limit` tokens or when `stop` is set."""
        if self._space_kept is None or len(text) <= PIECE_BYTES:
            return self._tokens(text, add_bos=add_bos)
        return self._pieces_tokens(text, add_bos=add_bos, keep_space=self._space_kept, limit=limit, stop=stop)

    def piece(self, token: int) -> bytes:
        """The bytes `token` stands for (special tokens as their text)."""
        return bytes(self._llama.detokenize([token], special=True))

    def _tokens(self, text: bytes, *, add_bos: bool) -> list[int]:
        return self._llama.tokenize(text, add_bos=add_bos, special=True)

    def _pieces_tokens(
        self,
        text: bytes,
        *,
        add_bos: bool,
        keep_space: bool,
        piece_bytes: int = PIECE_BYTES,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[int]:
        tokens: list[int] = []
        start = 0
        while start < len(text):
            end = _cut(text, start, piece_bytes)
            tokens += self._tokens(text[start:end], add_bos=add_bos and start == 0)
            start = end if keep_space or text[end : end + 1] != b" " else end + 1
            if (limit is not None and len(tokens) > limit) or (stop is not None and stop.is_set()):
                break
        return tokens


def _cut(text: bytes, start: int, piece_bytes: int) -> int:
    """Where the piece starting at `start` ends: before the last space within reach, else at a character edge."""
    end = start + piece_bytes
    if end >= len(text):
        return len(text)
    space = text.rfind(b" ", start + 1, end)
    if space > start:
        return space
    while text[end] & 0xC0 == 0x80:  # never split a UTF-8 character
        end -= 1
    return end
