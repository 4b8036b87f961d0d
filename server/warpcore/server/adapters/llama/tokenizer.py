"""Tokenize long prompts in pieces, so that the work can stop early, never grows quadratically, and a conversation's
next turn tokenizes only what it adds."""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable

import llama_cpp

from warpcore.server.adapters.llama.control_text import ControlTexts
from warpcore.server.adapters.llama.cuts import ESCAPED_SPACE, SPACE, SafeCuts

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
    applies is probed once, and a tokenizer for which neither gives the same tokens always gets whole prompts. A text
    with no space within a piece's reach is cut between characters; a piece after such a cut loses the space such a
    tokenizer puts before it, so that the tokens spell the text (tokenized a little otherwise than whole, there)."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._cuts = SafeCuts.of(llama)
        self.controls = ControlTexts.of(llama)
        """The texts of the vocabulary's control tokens, which a caller's text reads as text (control_text.py)."""
        self._remembered: collections.OrderedDict[tuple[bytes, bool, bool], list[int]] = collections.OrderedDict()
        self._space_kept: bool | None = None
        self._ids: dict[bytes, int] | None = None
        if self._cuts is not None:
            return
        whole = self._tokens(_PROBE, add_bos=False)
        for keep in (True, False):
            if self._pieces(_PROBE, functools.partial(_cut_at_space, piece_bytes=8, keep_space=keep)) == whole:
                self._space_kept = keep
                break

    def tokenize(
        self,
        text: bytes,
        *,
        add_bos: bool,
        limit: int,
        stop: threading.Event,
        remember: bool = False,
        special: bool = True,
        mid_text: bool = False,
    ) -> list[int]:
        """The tokens of `text`; stops early (with a shorter list) once past `limit` tokens or when `stop` is set.
        `remember`: the pieces' tokens may be kept for the next prompt (never those of a private prompt). `special`
        off: a control token's text is read as text. `mid_text`: `text` goes on from text tokenized apart, as a
        piece after a cut does."""
        if mid_text and self._space_kept is False and text.startswith(b" "):
            text, mid_text = text[1:], False  # the space the tokenizer puts before a text stands for this one
        if self._cuts is not None:
            cut: _Cut = functools.partial(_cut_safely, cuts=self._cuts)
        elif self._space_kept is None or len(text) <= PIECE_BYTES:
            tokens = self._tokens(text, add_bos=add_bos, special=special)
            return self._without_added_space(tokens) if mid_text and self._space_kept is False else tokens
        else:
            cut = functools.partial(_cut_at_space, piece_bytes=PIECE_BYTES, keep_space=self._space_kept)
        remember = remember and self._cuts is not None
        return self._pieces(
            text, cut, add_bos=add_bos, limit=limit, stop=stop, remember=remember, special=special, mid_text=mid_text
        )

    def piece(self, token: int) -> bytes:
        """The bytes `token` stands for (special tokens as their text)."""
        return bytes(self._llama.detokenize([token], special=True))

    def _tokens(self, text: bytes, *, add_bos: bool, special: bool = True) -> list[int]:
        # With special tokens on, llama.cpp looks for every control token's text in the text: their number (Gemma
        # has 6,250) times the text's length, seconds a kilobyte on text dense with '<'. A text that spells none
        # reads the same with them off.
        special = special and self.controls.holds(text.decode("utf-8", "replace"))
        return self._llama.tokenize(text, add_bos=add_bos, special=special)

    def _pieces(
        self,
        text: bytes,
        cut: _Cut,
        *,
        add_bos: bool = False,
        limit: int | None = None,
        stop: threading.Event | None = None,
        remember: bool = False,
        special: bool = True,
        mid_text: bool = False,
    ) -> list[int]:
        """The tokens of the pieces `cut` gives, one after another."""
        tokens: list[int] = []
        start = 0
        while start < len(text):
            end, start_after = cut(text, start)
            key = (text[start:end], add_bos and start == 0, special)
            piece = self._remembered.get(key) if remember else None
            if piece is None:
                piece = self._tokens(key[0], add_bos=key[1], special=special)
                after_text = text[start - 1] != SPACE if start > 0 else mid_text
                if self._space_kept is False and after_text:
                    piece = self._without_added_space(piece)
                if remember:
                    self._remembered[key] = piece
                    if len(self._remembered) > REMEMBERED_PIECES:
                        self._remembered.popitem(last=False)
            else:
                self._remembered.move_to_end(key)
            tokens += piece
            start = start_after
            if (limit is not None and len(tokens) > limit) or (stop is not None and stop.is_set()):
                break
        return tokens

    def _without_added_space(self, tokens: list[int]) -> list[int]:
        """`tokens` of a piece cut out of a word, without the space the tokenizer put before it: the first token's
        text less that space, as the vocabulary's one token for it, else as byte tokens (kept as it is by a
        vocabulary that has neither)."""
        first = llama_cpp.llama_vocab_get_text(self._vocab, tokens[0]) if tokens else b""
        if not first.startswith(ESCAPED_SPACE):
            return tokens  # the piece begins with a special token, before which no space is put
        ids = self._token_ids()
        rest = first[len(ESCAPED_SPACE) :]
        if not rest:
            return tokens[1:]
        if rest in ids:
            return [ids[rest], *tokens[1:]]
        byte_tokens = []
        for byte in rest.replace(ESCAPED_SPACE, b" "):
            byte_token = ids.get(f"<0x{byte:02X}>".encode())
            if byte_token is None:
                return tokens
            byte_tokens.append(byte_token)
        return [*byte_tokens, *tokens[1:]]

    def _token_ids(self) -> dict[bytes, int]:
        """The id of each ordinary and byte token, by its text; read from the vocabulary once, when first needed."""
        if self._ids is None:
            wanted = llama_cpp.LLAMA_TOKEN_ATTR_NORMAL | llama_cpp.LLAMA_TOKEN_ATTR_BYTE
            self._ids = {
                llama_cpp.llama_vocab_get_text(self._vocab, token): token
                for token in reversed(range(self._llama.n_vocab()))  # the lowest id of a text wins
                if llama_cpp.llama_vocab_get_attr(self._vocab, token) & wanted
            }
        return self._ids


_Cut = Callable[[bytes, int], tuple[int, int]]
"""Where the piece of a text that starts at a byte ends, and where the next one starts."""


def _cut_safely(text: bytes, start: int, *, cuts: SafeCuts) -> tuple[int, int]:
    """The piece starting at `start` ends at a safe cut (cuts.py), and the next starts there."""
    end = cuts.cut(text, start, REMEMBERED_PIECE_BYTES, PIECE_BYTES)
    return end, end


def _cut_at_space(text: bytes, start: int, *, piece_bytes: int, keep_space: bool) -> tuple[int, int]:
    """The piece starting at `start` ends before the last space within reach, else at a character edge; the next
    starts there, or after the space when the tokenizer adds one of its own."""
    end = start + piece_bytes
    if end >= len(text):
        return len(text), len(text)
    space = text.rfind(b" ", start + 1, end)
    if space > start:
        end = space
    else:
        while text[end] & 0xC0 == 0x80:  # never split a UTF-8 character
            end -= 1
    return end, end if keep_space or text[end : end + 1] != b" " else end + 1
