"""How a generation picks its tokens: one llama.cpp sampler chain per generation, from its options."""

from __future__ import annotations

import random
from typing import cast

import llama_cpp

from warpcore.server.core.domain import GenerationParams

# llama-cpp-python's create_completion defaults, used for options a request leaves unset.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
MIN_P = 0.05


def new_sampler(params: GenerationParams) -> llama_cpp.llama_sampler_p:
    """The generation's own sampler chain: greedy at temperature 0, else seeded top-k, top-p, min-p sampling.
    The caller frees it with llama_sampler_free."""
    temperature = params.temperature if params.temperature is not None else DEFAULT_TEMPERATURE
    chain = cast(
        "llama_cpp.llama_sampler_p", llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    )
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = params.seed if params.seed is not None else random.getrandbits(31)
    for stage in (
        llama_cpp.llama_sampler_init_top_k(params.top_k if params.top_k is not None else DEFAULT_TOP_K),
        llama_cpp.llama_sampler_init_top_p(params.top_p if params.top_p is not None else DEFAULT_TOP_P, 1),
        llama_cpp.llama_sampler_init_min_p(MIN_P, 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, stage)
    return chain
