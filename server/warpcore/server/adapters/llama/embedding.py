"""A model loaded for embeddings: its own native context, which pools each text's token vectors into one vector,
and several texts decoded together in one llama.cpp batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import llama_cpp

from warpcore.server.adapters.llama.context import LoadedWeights, embedding_logits_bytes
from warpcore.server.adapters.llama.native_log import stopping_quietly
from warpcore.server.core.embeddings import Embeddings, EmbedParams, Pooling
from warpcore.server.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    context_length_exceeded,
)

ABORTABLE_ROWS = 256
"""Decodes of this many tokens or more can be stopped mid-way: llama.cpp then asks at every node of the graph whether
to stop, a call into Python each, which a short decode would feel and a long one (seconds) does not."""
_ABORTED = 2  # llama_decode's status when its abort callback stopped it


class EmbeddingStoppedError(Exception):
    """The call was cancelled (its caller went away or its deadline passed) before its vectors were made."""


def model_pooling(vocabulary: llama_cpp.Llama, requested: Pooling | None) -> Pooling:
    """The pooling asked for, else the GGUF's own, else MEAN (a generative model's GGUF names none, or NONE)."""
    if requested is not None:
        return requested
    architecture = vocabulary.metadata.get("general.architecture", "")
    stored = vocabulary.metadata.get(f"{architecture}.pooling_type")
    try:
        return Pooling(int(stored)) if stored is not None else Pooling.MEAN
    except ValueError:
        return Pooling.MEAN


class EmbeddingContext:
    """Weights and one context whose batch holds up to `context_size` tokens of as many texts as llama.cpp decodes
    together; a text longer than the context cannot be pooled in one piece. Used on the model's worker only."""

    def __init__(
        self, weights: LoadedWeights, vocabulary: llama_cpp.Llama, *, pooling: Pooling, context_size: int, threads: int
    ) -> None:
        self._vocabulary = vocabulary
        self.context_size = context_size
        # Repacked weights (llama-cpp-python's default, its fastest kernels): a text's vector changes with the texts
        # batched beside it whatever the kernels. The attention and the pooling sum a text's rows in an order set by
        # where they fall in the batch, and the kernels switch with the batch's rows; Gemma's large activations carry
        # the last-bit differences into the vector (embeddings.proto states the bound, a test checks it). A text alone
        # in its own decode would be exact, but a batch of short texts would then pay a decode each, several times the
        # time; loading without repacking buys no guarantee either.
        self.model = weights.load(repack=True)
        # As many texts as llama.cpp decodes together, each of one token at least.
        self.sequences = min(llama_cpp.llama_max_parallel_sequences(), context_size)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = context_size
        params.n_seq_max = self.sequences
        params.kv_unified = True
        params.embeddings = True
        params.pooling_type = int(pooling)
        # As llama-cpp-python's own Llama.embed: the same vectors, not ones a few parts in ten thousand apart.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise FailedPreconditionError(
                f"llama.cpp could not create an embedding context of {context_size} tokens; lower context_size",
                reason="MODEL_LOAD_FAILED",
            )
        self._stop = threading.Event()
        # Kept as an attribute: llama.cpp holds only the C pointer, which must outlive every decode.
        self._abort = llama_cpp.ggml_abort_callback(lambda _data: self._stop.is_set())
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(context_size, 0, 1)
        self.dimensions = llama_cpp.llama_model_n_embd(self.model)

    @property
    def memory_bytes(self) -> int:
        """The weights, and the logits of a batch that fills the context (the context keeps no cache between calls):
        with a generative model's vocabulary these are the bulk (Gemma 3's 262,144 entries: 2 MiB a token), and they
        stay allocated once a batch has needed them."""
        vocabulary = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model)))
        return int(llama_cpp.llama_model_size(self.model)) + embedding_logits_bytes(self.context_size, vocabulary)

    def embed(self, params: EmbedParams, stop: threading.Event) -> Embeddings:
        """One vector per input, as llama.cpp pools it (not normalized); texts go in batches that fill the
        context. `stop`, once set, ends the work at the next batch, or inside a long one (EmbeddingStoppedError)."""
        self._stop = stop
        if params.dimensions is not None and params.dimensions != self.dimensions:
            raise InvalidArgumentError(
                f"this model's vectors have {self.dimensions} dimensions; leave dimensions unset or set it to that",
                field="dimensions",
                reason="OPTION_UNSUPPORTED",
            )
        texts = [self._tokens(index, text, params) for index, text in enumerate(params.inputs)]
        vectors: list[tuple[float, ...]] = []
        group: list[list[int]] = []
        for tokens in texts:
            if group and (sum(map(len, group)) + len(tokens) > self.context_size or len(group) == self.sequences):
                vectors += self._decode(group)
                group = []
            group.append(tokens)
        vectors += self._decode(group)
        return Embeddings(tuple(vectors), prompt_tokens=sum(map(len, texts)))

    def _tokens(self, index: int, text: str, params: EmbedParams) -> list[int]:
        tokens: list[int] = self._vocabulary.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > self.context_size and not params.truncate:
            raise context_length_exceeded(
                f"inputs[{index}]",
                f"{len(tokens)} tokens",
                self.context_size,
                field=f"inputs[{index}]",
                metadata={"prompt_tokens": str(len(tokens))},
                also=f", set {params.truncate_option}," if params.truncate_option else "",
            )
        return tokens[: self.context_size]

    def _decode(self, group: Sequence[list[int]]) -> list[tuple[float, ...]]:
        if self._stop.is_set():
            raise EmbeddingStoppedError
        batch = self.batch
        row = 0
        for sequence, tokens in enumerate(group):
            for position, token in enumerate(tokens):
                batch.token[row] = token
                batch.pos[row] = position
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = sequence
                batch.logits[row] = True  # every token is an output of an embedding context
                row += 1
        batch.n_tokens = row
        llama_cpp.llama_memory_clear(self.memory, True)
        abortable = row >= ABORTABLE_ROWS
        if abortable:
            llama_cpp.llama_set_abort_callback(self.ctx, self._abort, None)
        try:
            with stopping_quietly(self._stop.is_set):
                status = llama_cpp.llama_decode(self.ctx, batch)
        finally:
            batch.n_tokens = 0
            if abortable:
                llama_cpp.llama_set_abort_callback(self.ctx, llama_cpp.ggml_abort_callback(), None)
        if status == _ABORTED:
            raise EmbeddingStoppedError
        if status != 0:
            raise UnavailableError("the local model failed to embed; retry", reason="DECODE_FAILED")
        return [
            tuple(llama_cpp.llama_get_embeddings_seq(self.ctx, sequence)[: self.dimensions])
            for sequence in range(len(group))
        ]

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)
