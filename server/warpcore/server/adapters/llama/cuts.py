"""Where a prompt's text may be cut so that its pieces, tokenized one by one, give exactly the whole text's tokens.

llama.cpp's SentencePiece tokenizer (llama-vocab.cpp: `tokenizer_st_partition`, then `llm_tokenizer_spm_session`)
first splits the text where a special token's text occurs, then merges neighbouring symbols, pair after pair, and
only ever into a token of the vocabulary. So between two bytes that no token's text holds side by side, neither a
special token nor a merge reaches across: the text before and the text after tokenize on their own into the very
tokens the whole text gives. This holds only where the tokenizer adds nothing at a text's edges: no space before it
(`add_space_prefix`) and no end-of-sequence token after it. Other vocabularies get no cuts (`SafeCuts.of` is None)."""

from __future__ import annotations

import itertools

import llama_cpp
import numpy as np

ESCAPED_SPACE = "\u2581".encode()  # SentencePiece writes a space so, in the vocabulary and before merging
SPACE = 0x20
_PAIRS = 1 << 16
_PROBE = b"Rule 1: when a guest asks,  say so.\n\n<start_of_turn>user\ncaf\xc3\xa9 na\xc3\xafve\t(42)?\n<end_of_turn>\n"


def _pairs(text: bytes) -> np.ndarray:
    """Which byte pairs `text` holds side by side: a flag per pair, indexed first byte * 256 + second."""
    data = np.frombuffer(text, dtype=np.uint8)
    present = np.zeros(_PAIRS, dtype=bool)
    present[(data[:-1].astype(np.uint16) << 8) | data[1:]] = True
    return present


class SafeCuts:
    """A vocabulary's safe cuts: between bytes `a` and `b` of a prompt when `unsafe[a * 256 + b]` is 0."""

    def __init__(self, unsafe: bytes) -> None:
        self._unsafe = unsafe

    @classmethod
    def of(cls, llama: llama_cpp.Llama) -> SafeCuts | None:
        """The safe cuts of `llama`'s vocabulary, or None when its tokenizer is not one they hold for."""
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        if (
            llama_cpp.llama_vocab_type(vocab) != llama_cpp.LLAMA_VOCAB_TYPE_SPM
            or llama.metadata.get("tokenizer.ggml.add_space_prefix") != "false"  # llama.cpp's default is to add one
            or llama_cpp.llama_vocab_get_add_eos(vocab)
        ):
            return None
        # Token texts are joined by NUL: the pairs that adds only forbid cuts next to a NUL.
        stored = b"\0".join(llama_cpp.llama_vocab_get_text(vocab, token) for token in range(llama.n_vocab()))
        merged = _pairs(stored)  # pairs as merging sees them: spaces escaped
        matched = _pairs(stored.replace(ESCAPED_SPACE, b" "))  # as special tokens are matched: raw text
        first, second = np.divmod(np.arange(_PAIRS), 256)
        escaped_first = np.where(first == SPACE, ESCAPED_SPACE[-1], first)
        escaped_second = np.where(second == SPACE, ESCAPED_SPACE[0], second)
        unsafe = merged[(escaped_first << 8) | escaped_second] | matched
        unsafe |= (second & 0xC0) == 0x80  # never inside a UTF-8 character
        cuts = cls(unsafe.astype(np.uint8).tobytes())
        # A last check against the tokenizer itself, should a llama.cpp release tokenize otherwise.
        whole = llama.tokenize(_PROBE, add_bos=False, special=True)
        edges = [0, *(end for end in range(1, len(_PROBE)) if cuts.safe(_PROBE, end)), len(_PROBE)]
        pieces = [llama.tokenize(_PROBE[a:b], add_bos=False, special=True) for a, b in itertools.pairwise(edges)]
        return cuts if [token for piece in pieces for token in piece] == whole else None

    def safe(self, text: bytes, at: int) -> bool:
        """Whether `text` may be cut before byte `at` (0 < at < len(text))."""
        return not self._unsafe[text[at - 1] << 8 | text[at]]

    def cut(self, text: bytes, start: int, size: int, reach: int) -> int:
        """Where the piece of `text` starting at `start` ends: at the safe cut nearest after `size` bytes' half and
        at most `size` bytes on, else the first within `reach` bytes, else (a text no safe cut divides, which then
        tokenizes a little otherwise than whole) at `reach`, never inside a UTF-8 character. A cut found within
        `size` bytes depends on no byte after it, so a longer text that begins with the piece cuts there too."""
        if start + size >= len(text):
            return len(text)
        for at in range(start + size, start + size // 2, -1):
            if self.safe(text, at):
                return at
        end = min(start + reach, len(text))
        for at in range(start + size + 1, end):
            if self.safe(text, at):
                return at
        while end < len(text) and text[end] & 0xC0 == 0x80:
            end -= 1
        return end
