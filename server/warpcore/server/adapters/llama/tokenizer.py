"""Tokenize long prompts in pieces, so that the work can stop early, never grows quadratically, and a conversation's
next turn tokenizes only what it adds."""

from __future__ import annotations

import collections
import threading

import llama_cpp

from warpcore.server.adapters.llama.cuts import SafeCuts

# llama.cpp's tokenizer is quadratic on byte-fallback text (250 kB of control characters: ~9 s in one call,
# ~0.4 s in pieces of this size), and a call cannot be interrupted.
PIECE_BYTES = 8192
# Where cuts are safe (cuts.py), pieces are this long, and each piece's tokens are remembered: a conversation's
# next turn repeats all of the last one's text, and tokenizes again only its last piece and what it adds.
REMEMBERED_PIECE_BYTES = 1024
REMEMBERED_PIECES = 1024
_PROBE = b"the quick brown fox jumps over the lazy dog"


class PromptTokenizer:
    """Gives a prompt's tokens, those of the whole text, from pieces. With a vocabulary whose safe cuts are known
    (cuts.py), pieces end there and the tokens of the pieces of prompts that may be kept are remembered (the most
    recently used REMEMBERED_PIECES). Otherwise pieces end at spaces: tokenizers that add a space before every text
    (SentencePiece's add_space_prefix) take the piece after a cut without its space, others with it; which one
    applies is probed once, and a tokenizer for which neither gives the same tokens always gets whole prompts."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama
        self._cuts = SafeCuts.of(llama)
        self._remembered: collections.OrderedDict[tuple[bytes, bool], list[int]] = collections.OrderedDict()
        self._space_kept: bool | None = None
        if self._cuts is not None:
            return
        whole = self._tokens(_PROBE, add_bos=False)
        for keep in (True, False):
            if self._spaced_tokens(_PROBE, add_bos=False, keep_space=keep, piece_bytes=8) == whole:
                self._space_kept = keep
                break

    def tokenize(
        self, text: bytes, *, add_bos: bool, limit: int, stop: threading.Event, remember: bool = False
    ) -> list[int]:
        """The tokens of `text`; stops early (with a shorter list) once past `limit` tokens or when `stop` is set.
        `remember`: the pieces' tokens may be kept for the next prompt (never those of a private prompt)."""
        if self._cuts is not None:
            return self._cut_tokens(self._cuts, text, add_bos=add_bos, limit=limit, stop=stop, remember=remember)
        if self._space_kept is None or len(text) <= PIECE_BYTES:
            return self._tokens(text, add_bos=add_bos)
        return self._spaced_tokens(text, add_bos=add_bos, keep_space=self._space_kept, limit=limit, stop=stop)

    def piece(self, token: int) -> bytes:
        """The bytes `token` stands for (special tokens as their text)."""
        return bytes(self._llama.detokenize([token], special=True))

    def _tokens(self, text: bytes, *, add_bos: bool) -> list[int]:
        return self._llama.tokenize(text, add_bos=add_bos, special=True)

    def _cut_tokens(
        self, cuts: SafeCuts, text: bytes, *, add_bos: bool, limit: int, stop: threading.Event, remember: bool
    ) -> list[int]:
        tokens: list[int] = []
        start = 0
        while start < len(text):
            end = cuts.cut(text, start, REMEMBERED_PIECE_BYTES, PIECE_BYTES)
            key = (text[start:end], add_bos and start == 0)
            piece = self._remembered.get(key) if remember else None
            if piece is None:
                piece = self._tokens(key[0], add_bos=key[1])
                if remember:
                    self._remembered[key] = piece
                    if len(self._remembered) > REMEMBERED_PIECES:
                        self._remembered.popitem(last=False)
            else:
                self._remembered.move_to_end(key)
            tokens += piece
            start = end
            if len(tokens) > limit or stop.is_set():
                break
        return tokens

    def _spaced_tokens(
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
            end = _cut_at_space(text, start, piece_bytes)
            tokens += self._tokens(text[start:end], add_bos=add_bos and start == 0)
            start = end if keep_space or text[end : end + 1] != b" " else end + 1
            if (limit is not None and len(tokens) > limit) or (stop is not None and stop.is_set()):
                break
        return tokens


def _cut_at_space(text: bytes, start: int, piece_bytes: int) -> int:
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
