"""How a generation picks its tokens: one llama.cpp sampler chain per generation, from its options."""

from __future__ import annotations

import random
from typing import cast

import llama_cpp
import numpy as np

from warpcore.server.core.domain import GenerationParams

# llama-cpp-python's create_completion defaults, used for options a request leaves unset.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
MIN_P = 0.05
GREEDY_BELOW = 1e-30
"""Temperatures under this sample as greedy, their limit: llama.cpp divides single-precision scores by the temperature,
and by one near the smallest float the quotients overflow, and the picks are no longer the likeliest tokens'."""


def _temperature(params: GenerationParams) -> float:
    return params.temperature if params.temperature is not None else DEFAULT_TEMPERATURE


def is_greedy(params: GenerationParams) -> bool:
    """Whether the generation takes the highest-scoring token at every step."""
    return _temperature(params) < GREEDY_BELOW


def picks_most_likely(params: GenerationParams) -> bool:
    """Whether each token is the model's most likely one: greedy, with no bias or penalty to apply to the scores."""
    return is_greedy(params) and not params.penalties and not params.logit_bias


def new_sampler(params: GenerationParams, vocabulary_size: int) -> llama_cpp.llama_sampler_p:
    """The generation's own sampler chain: greedy at temperature 0 (or under GREEDY_BELOW), else seeded top-k, top-p,
    min-p sampling; first the logit bias, then presence or frequency penalties (llama.cpp's penalties), on the raw
    scores as OpenAI applies them. The penalties count the tokens the chain accepts, which are the generated ones only,
    as OpenAI counts. The caller frees it with llama_sampler_free."""
    temperature = _temperature(params)
    chain = cast(
        "llama_cpp.llama_sampler_p", llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    )
    if params.logit_bias:
        entries = [llama_cpp.llama_logit_bias(token, bias) for token, bias in params.logit_bias]
        biases = (llama_cpp.llama_logit_bias * len(entries))(*entries)
        bias = llama_cpp.llama_sampler_init_logit_bias(vocabulary_size, len(params.logit_bias), biases)
        llama_cpp.llama_sampler_chain_add(chain, bias)
    if params.penalties:
        frequency, presence = params.frequency_penalty or 0.0, params.presence_penalty or 0.0
        penalties = llama_cpp.llama_sampler_init_penalties(vocabulary_size, params.max_tokens, 1.0, frequency, presence)
        llama_cpp.llama_sampler_chain_add(chain, penalties)
    if is_greedy(params):
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = params.seed if params.seed is not None else random.getrandbits(31)
    if seed == llama_cpp.LLAMA_DEFAULT_SEED:  # llama.cpp reads this one value as "a random seed": same answer lost
        seed -= 1
    for stage in (
        llama_cpp.llama_sampler_init_top_k(params.top_k if params.top_k is not None else DEFAULT_TOP_K),
        llama_cpp.llama_sampler_init_top_p(params.top_p if params.top_p is not None else DEFAULT_TOP_P, 1),
        llama_cpp.llama_sampler_init_min_p(MIN_P, 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, stage)
    return chain


def logprobs(ctx: llama_cpp.llama_context_p, row: int, vocabulary_size: int, token: int, top: int) -> Logprobs:
    """`token`'s log-probability in the model's distribution at `row` (the raw logits, before the sampler's
    options), and the `top` most likely tokens with theirs, most likely first (ties by token id)."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(vocabulary_size,))
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    alternatives: list[tuple[int, float]] = []
    if top:
        candidates = np.argpartition(-logits, top - 1)[:top]
        ranked = sorted(candidates.tolist(), key=lambda candidate: (-logits[candidate], candidate))
        alternatives = [(int(candidate), float(logits[candidate]) - log_total) for candidate in ranked]
    return float(logits[token]) - log_total, alternatives


Logprobs = tuple[float, list[tuple[int, float]]]
"""A token's log-probability, and the (token, log-probability) of the most likely tokens."""
