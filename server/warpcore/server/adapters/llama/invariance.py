"""How many sequences one llama.cpp call may decode together without changing any one's logits, and whether a
prompt may be cut into calls of any size from MIN_CALL_ROWS rows on.

llama.cpp's CPU kernels change with the number of rows in a call, and with them the last bits of every row, which
greedy decoding turns into different text; where they switch depends on the model, the CPU and the thread count.
Weights loaded without repacking switch later than repacked ones, so the scheduler loads them so, and measures the
largest safe number of rows per call once, at load."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np

from warpcore.server.adapters.llama.context import MIN_CALL_ROWS, PREFILL_PIECE, NativeContext
from warpcore.server.core.errors import FailedPreconditionError

_log = logging.getLogger(__name__)
_PROBE_TOKENS = 5
# One prompt cut three ways: in pieces, in calls of the least rows and of odd sizes, and whole; llama.cpp's kernels
# may change with a call's rows at either end, or with their parity.
_SPLITS = ((PREFILL_PIECE, PREFILL_PIECE), (MIN_CALL_ROWS, 11, 45), (2 * PREFILL_PIECE,))


@dataclass(frozen=True)
class _ProbeSequence:
    slot: int
    tokens: list[int]


def invariant_rows(native: NativeContext, slots: int) -> int:
    """The most rows one llama_decode call may hold with each row's logits bit for bit those it gets alone, measured
    with a short made-up prompt per slot. Leaves the KV cache empty."""
    vocabulary = native.vocabulary_size
    probe = [
        _ProbeSequence(slot, [(97 * slot + 13 * n + 5) % vocabulary for n in range(_PROBE_TOKENS)])
        for slot in range(slots)
    ]
    for sequence in probe:  # all tokens but the last, each slot alone
        for position, token in enumerate(sequence.tokens[:-1]):
            native.put(token, position, sequence.slot, logits=False)
        _checked(native.decode())

    def logits(group: list[_ProbeSequence]) -> list[np.ndarray]:
        for sequence in group:
            native.put(sequence.tokens[-1], len(sequence.tokens) - 1, sequence.slot, logits=True)
        _checked(native.decode())
        rows = [
            np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(native.ctx, row), shape=(vocabulary,)).copy()
            for row in range(len(group))
        ]
        for sequence in group:
            native.forget(sequence.slot, len(sequence.tokens) - 1)
        return rows

    alone = [logits([sequence])[0] for sequence in probe]
    rows = 1
    while rows < slots and all(np.array_equal(row, alone[n]) for n, row in enumerate(logits(probe[: rows + 1]))):
        rows += 1
    llama_cpp.llama_memory_clear(native.memory, True)
    _log.info("decoding up to %d of %d sequences per llama.cpp call keeps their outputs independent", rows, slots)
    return rows


def splits_freely(native: NativeContext, context_size: int) -> bool:
    """Whether cutting a prompt into calls of at least MIN_CALL_ROWS rows, anywhere, leaves its KV cells and its
    last logits bit for bit the same: checked on one made-up prompt cut each of three ways, if a slot's
    `context_size` holds it (prompts of a smaller one are too short to gain). Leaves the KV cache empty."""
    vocabulary = native.vocabulary_size
    tokens = [(31 * n + 7) % vocabulary for n in range(2 * PREFILL_PIECE)]
    if context_size < len(tokens):
        return False
    outcomes = {_decoded(native, tokens, split) for split in _SPLITS}
    llama_cpp.llama_memory_clear(native.memory, True)
    free = len(outcomes) == 1
    _log.info("prompts go into llama.cpp %s", "in calls cut freely" if free else f"in pieces of {PREFILL_PIECE}")
    return free


def _decoded(native: NativeContext, tokens: Sequence[int], split: Sequence[int]) -> bytes:
    """The KV cells and last logits of `tokens` decoded into an empty sequence 0 in calls of `split` rows."""
    llama_cpp.llama_memory_clear(native.memory, True)
    position = 0
    for rows in split:
        for token in tokens[position : position + rows]:
            native.put(token, position, 0, logits=position == len(tokens) - 1)
            position += 1
        _checked(native.decode())
    last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(native.ctx, -1), shape=(native.vocabulary_size,))
    size = llama_cpp.llama_state_seq_get_size(native.ctx, 0)
    cells = (ctypes.c_uint8 * size)()
    llama_cpp.llama_state_seq_get_data(native.ctx, cells, size, 0)
    return bytes(cells) + last.tobytes()


def _checked(decoded: bool) -> None:
    if not decoded:
        raise FailedPreconditionError("llama.cpp could not decode on the new context", reason="MODEL_LOAD_FAILED")
