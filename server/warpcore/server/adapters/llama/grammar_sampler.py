"""A generation's sampler: its sampler chain, and the llama.cpp grammar sampler when its output is constrained."""

from __future__ import annotations

import ctypes
import logging
import math
import re
from collections.abc import Iterator
from typing import cast

import llama_cpp
import numpy as np

from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.sampling import new_sampler, picks_most_likely
from warpcore.server.adapters.llama.tool_calls import CALL_OPENING
from warpcore.server.core.domain import GenerationParams
from warpcore.server.core.errors import InvalidArgumentError

_log = logging.getLogger(__name__)
# llama_token_data, for the whole vocabulary at once.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
# A rejected token is replaced by the chain's pick among the allowed tokens of a shortlist of the most likely ones
# (the tokens within NEAR_LOGITS of the best, at most the SHORTLIST best; then the WIDE_SHORTLIST best), the whole
# vocabulary only when the shortlists hold no allowed token: checking a large vocabulary against the grammar
# costs far more than a decode step, and tokens outside a shortlist that held an allowed one hardly ever survive
# top-k, top-p and min-p anyway.
NEAR_LOGITS = 10.0
SHORTLIST = 2048
WIDE_SHORTLIST = 16384
# Where a tool call opens: llama.cpp's lazy grammar searches the generated text for it and starts from there.
_CALL_TRIGGER = re.escape(CALL_OPENING)


class Sampler:
    """Picks a generation's tokens; with a grammar, only tokens that keep the text a prefix of a sentence of it.

    The chain first samples over every token; only when the grammar rejects that token is it sampled again over
    the tokens the grammar allows (llama.cpp's common sampler does the same): the grammar checks one token on most
    steps instead of the whole vocabulary. The pick is that of the grammar applied first: exactly so for greedy
    decoding, and for sampling whenever no token outside the shortlist would have survived the chain's top-k. Free
    with free()."""

    def __init__(
        self,
        chain: llama_cpp.llama_sampler_p,
        vocab: llama_cpp.llama_vocab_p,
        constraint: Constraint | None,
        *,
        greedy_over: int = 0,
        counts: bool = False,
    ):
        """`greedy_over`: for a greedy chain, the vocabulary's size, to pick from the logits themselves. `counts`:
        the chain counts the tokens it accepts (penalties), so with a grammar it must accept only the token picked:
        the pick is then made among the tokens the grammar allows from the start."""
        self._chain = chain
        self._greedy_over = greedy_over
        self._grammar_first = counts
        self._vocab = vocab
        self._grammar: llama_cpp.llama_sampler_p | None = None
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._one_pointer = ctypes.byref(self._one_array)
        if constraint is not None:
            self._grammar = _grammar_sampler(vocab, constraint)
            if not self._grammar:
                self.free()
                raise InvalidArgumentError(
                    f"{constraint.field}: llama.cpp could not build a grammar from it (details in the server log)",
                    field=constraint.field,
                    reason="SCHEMA_UNSUPPORTED",
                )

    @classmethod
    def of(
        cls,
        params: GenerationParams,
        vocab: llama_cpp.llama_vocab_p,
        vocabulary_size: int,
        constraint: Constraint | None,
    ) -> Sampler:
        """The sampler of a generation with these options (token ids checked by the adapter), over a vocabulary of
        `vocabulary_size` tokens."""
        chain = new_sampler(params, vocabulary_size)
        greedy_over = vocabulary_size if picks_most_likely(params) else 0
        return cls(chain, vocab, constraint, greedy_over=greedy_over, counts=bool(params.penalties))

    def sample(self, ctx: llama_cpp.llama_context_p, row: int) -> int:
        if self._grammar is not None and self._grammar_first:
            token = self._resample(ctx, row)
        else:
            token = self._unconstrained(ctx, row)
            if self._grammar is not None and not self._allowed(token):
                token = self._resample(ctx, row)
        self._accept_grammar(token)
        return token

    def _unconstrained(self, ctx: llama_cpp.llama_context_p, row: int) -> int:
        if self._greedy_over:
            # The first of the largest logits, as llama.cpp's greedy sampler picks it, without the array of every
            # token's data that the sampler chain fills first, which costs more than the pick.
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(self._greedy_over,))
            return int(logits.argmax())
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, row))

    def _accept_grammar(self, token: int) -> None:
        if self._grammar is not None and not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            # Never an end token: llama.cpp aborts the process on one the grammar is not complete for.
            llama_cpp.llama_sampler_accept(self._grammar, token)

    def free(self) -> None:
        llama_cpp.llama_sampler_free(self._chain)
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
        self._grammar = None

    def _allowed(self, token: int) -> bool:
        self._one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self._grammar, self._one_pointer)
        return math.isfinite(self._one[0].logit)

    def _resample(self, ctx: llama_cpp.llama_context_p, row: int) -> int:
        count = llama_cpp.llama_vocab_n_tokens(self._vocab)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(count,))
        for shortlist in _shortlists(logits):
            token = self._pick(shortlist.astype(np.int32), logits[shortlist])
            if token is not None:
                return token
        # The grammar allows no token at all: end the text rather than feed the grammar a token it rejects.
        _log.error("the grammar of a generation allowed no token; ending it")
        return int(llama_cpp.llama_vocab_eos(self._vocab))

    def _pick(self, ids: np.ndarray, logits: np.ndarray) -> int | None:
        """The chain's pick among the tokens `ids` that the grammar allows, None when it allows none of them."""
        candidates = np.empty(len(ids), dtype=_TOKEN_DATA)
        candidates["id"], candidates["logit"], candidates["p"] = ids, logits, 0.0
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        if not np.isfinite(candidates["logit"]).any():
            return None
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        token = int(array.data[array.selected].id)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token


def _shortlists(logits: np.ndarray) -> Iterator[np.ndarray]:
    """Ever larger sets of the most likely tokens, the last one the whole vocabulary."""
    count = len(logits)
    near = np.flatnonzero(logits >= logits.max() - NEAR_LOGITS)
    yield near if len(near) <= SHORTLIST else np.argpartition(logits, count - SHORTLIST)[count - SHORTLIST :]
    if count > WIDE_SHORTLIST:
        yield np.argpartition(logits, count - WIDE_SHORTLIST)[count - WIDE_SHORTLIST :]
    yield np.arange(count)


def _grammar_sampler(vocab: llama_cpp.llama_vocab_p, constraint: Constraint) -> llama_cpp.llama_sampler_p | None:
    grammar, root = constraint.grammar.encode(), b"root"
    if not constraint.lazy:
        return cast("llama_cpp.llama_sampler_p | None", llama_cpp.llama_sampler_init_grammar(vocab, grammar, root))
    patterns = (ctypes.c_char_p * 1)(_CALL_TRIGGER.encode())
    no_tokens = (llama_cpp.llama_token * 0)()
    return cast(
        "llama_cpp.llama_sampler_p | None",
        llama_cpp.llama_sampler_init_grammar_lazy_patterns(vocab, grammar, root, patterns, 1, no_tokens, 0),
    )
