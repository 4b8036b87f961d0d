"""Continuous batching: several generations share one llama.cpp context, one decode step for all of them."""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import llama_cpp
import numpy as np

from warpcore.server.adapters.llama_text import Emit, PreparedPrompt, TokenText
from warpcore.server.domain import FinishReason, GenerationParams
from warpcore.server.errors import FailedPreconditionError, UnavailableError

_log = logging.getLogger(__name__)
STEP_TOKENS = 512  # most tokens in one llama_decode call (llama.cpp's n_batch)
# A prompt enters the KV cache in pieces of this many tokens, each its own llama_decode call, whatever else is
# running: the same pieces alone or not give the same cache, and a long prompt never stalls the others for long.
PREFILL_CHUNK = 128
MIN_P = 0.05  # as llama-cpp-python's own sampling default, so both paths sample alike

Prepare = Callable[[GenerationParams, int, threading.Event], PreparedPrompt]


@dataclass(frozen=True)
class LoadedWeights:
    """Where the weights are and how to hold them."""

    path: Path
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool


@dataclass(eq=False)
class Job:
    """One generation handed to the scheduler by the event loop."""

    params: GenerationParams
    emit: Emit
    stop: threading.Event


@dataclass(eq=False)
class _Sequence:
    job: Job
    slot: int
    prompt: PreparedPrompt
    text: TokenText
    sampler: llama_cpp.llama_sampler_p
    prefilled: int = 0  # prompt tokens already in the KV cache
    position: int = 0
    next_token: int | None = None  # sampled, not yet decoded


def _sampler(params: GenerationParams, temperature: float, top_p: float, top_k: int) -> llama_cpp.llama_sampler_p:
    """The generation's own sampler chain: greedy at temperature 0, else seeded top-k, top-p, min-p sampling."""
    chain = cast(
        "llama_cpp.llama_sampler_p", llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    )
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = params.seed if params.seed is not None else random.getrandbits(31)
    for stage in (
        llama_cpp.llama_sampler_init_top_k(top_k),
        llama_cpp.llama_sampler_init_top_p(top_p, 1),
        llama_cpp.llama_sampler_init_min_p(MIN_P, 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, stage)
    return chain


SamplingDefaults = Callable[[GenerationParams], tuple[float, float, int]]


class BatchScheduler:
    """Owns one llama.cpp context with `slots` sequences, each with a KV cache of `context_size` tokens.

    `run()` is the model's worker loop: every step it admits waiting jobs into free slots (first come, first
    served), decodes the next token of every running generation, adds a piece of each newly admitted prompt,
    samples each sequence with its own sampler, and frees the slot and KV cells of a generation as soon as it
    finishes or its caller goes away. Only `submit()` and `close()` are called from other threads.

    llama.cpp's CPU kernels change with the number of rows in a call, and with them the last bits of every
    row, which greedy decoding turns into different text: weights repacked for the CPU switch kernels at 4
    rows (and below that gain nothing from batching), plain ones at 8 on this machine. So the weights are
    loaded without repacking (as fast here for one stream), and a step decodes its generations in calls of at
    most `rows_per_call` rows, the largest count measured at load time to give every row exactly the logits
    it gets alone."""

    def __init__(
        self,
        vocabulary: llama_cpp.Llama,
        weights: LoadedWeights,
        *,
        slots: int,
        context_size: int,
        prepare: Prepare,
        sampling: SamplingDefaults,
    ) -> None:
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = weights.gpu_layers
        model_params.use_mmap = weights.use_mmap
        model_params.use_mlock = weights.use_mlock
        model_params.use_extra_bufts = False  # no repacking: see above
        self._model = llama_cpp.llama_model_load_from_file(str(weights.path).encode(), model_params)
        if not self._model:
            raise FailedPreconditionError("llama.cpp could not load the model's weights", reason="MODEL_LOAD_FAILED")
        # One KV cache for all slots: attention then spans the cells in use, not each slot's whole context.
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * slots
        params.n_batch = params.n_ubatch = STEP_TOKENS
        params.n_seq_max = slots
        params.kv_unified = True
        params.n_threads = vocabulary.context_params.n_threads
        params.n_threads_batch = vocabulary.context_params.n_threads_batch
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise FailedPreconditionError(
                f"llama.cpp could not create a context for {slots} sequences of {context_size} tokens; lower"
                " parallel or context_size",
                reason="MODEL_LOAD_FAILED",
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)
        self._llama = vocabulary
        self._context_size = context_size
        self._prepare = prepare
        self._sampling = sampling
        self._free_slots = list(range(slots - 1, -1, -1))
        self._running: list[_Sequence] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self.rows_per_call = self._invariant_rows(slots)

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._closing:
                raise UnavailableError("the model is being unloaded", reason="MODEL_UNLOADING")
            self._waiting.append(job)
            self._wake.notify()

    def close(self) -> None:
        """Let running and waiting generations finish, then end `run()` and free the context."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    def run(self) -> None:
        try:
            while self._admit():
                self._drop_cancelled()
                self._step()
        finally:
            # Empty unless the loop failed: then nobody must wait forever for its generation.
            stopped = UnavailableError("the local model stopped; retry", reason="MODEL_UNLOADING")
            for sequence in self._running:
                sequence.job.emit(stopped)
                llama_cpp.llama_sampler_free(sequence.sampler)
            with self._wake:
                self._closing = True
                for job in self._waiting:
                    job.emit(stopped)
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)

    # Everything below runs on the worker thread.

    def _admit(self) -> bool:
        """Move waiting jobs into free slots; False once closing with nothing left to do."""
        with self._wake:
            while not self._running and not self._waiting:
                if self._closing:
                    return False
                self._wake.wait()
            admitted: list[Job] = []
            while self._waiting and len(admitted) < len(self._free_slots):
                admitted.append(self._waiting.popleft())
        for job in admitted:
            if not job.stop.is_set():
                self._start(job)
        return True

    def _start(self, job: Job) -> None:
        try:
            prompt = self._prepare(job.params, self._context_size, job.stop)
            sampler = _sampler(job.params, *self._sampling(job.params))
        except Exception as error:  # noqa: BLE001 - the caller's stream raises it
            job.emit(error)
            return
        text = TokenText(self._llama, prompt, job.emit)
        self._running.append(_Sequence(job, self._free_slots.pop(), prompt, text, sampler))

    def _drop_cancelled(self) -> None:
        for sequence in list(self._running):
            if sequence.job.stop.is_set():
                self._finish(sequence, FinishReason.CANCELLED)

    def _step(self) -> None:
        generating = [(sequence, sequence.next_token) for sequence in self._running if sequence.next_token is not None]
        prefilling = [sequence for sequence in self._running if sequence.next_token is None]
        for start in range(0, len(generating), self.rows_per_call):
            group = [sequence for sequence, _ in generating[start : start + self.rows_per_call]]
            self._batch.n_tokens = 0
            rows = [
                self._add(sequence, token, logits=True)
                for sequence, token in generating[start : start + self.rows_per_call]
            ]
            if self._decode(group):
                for sequence, row in zip(group, rows, strict=True):
                    self._sample(sequence, row)
        for sequence in prefilling:
            tokens = sequence.prompt.tokens
            end = min(sequence.prefilled + PREFILL_CHUNK, len(tokens))
            self._batch.n_tokens = 0
            rows = [self._add(sequence, token, logits=False) for token in tokens[sequence.prefilled : end]]
            sequence.prefilled = end
            if end == len(tokens):
                self._batch.logits[rows[-1]] = True
            if self._decode([sequence]) and end == len(tokens):
                self._sample(sequence, rows[-1])

    def _add(self, sequence: _Sequence, token: int, *, logits: bool) -> int:
        sequence.position += 1
        return _put(self._batch, token, sequence.position - 1, sequence.slot, logits=logits)

    def _decode(self, group: Sequence[_Sequence]) -> bool:
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status == 0:
            return True
        # These sequences' caches are in an unknown state: end them rather than emit wrong text.
        _log.error("llama_decode failed with status %d for %d sequences", status, len(group))
        for sequence in group:
            sequence.job.emit(UnavailableError("the local model failed to decode; retry", reason="DECODE_FAILED"))
            self._release(sequence)
        return False

    def _sample(self, sequence: _Sequence, row: int) -> None:
        token = llama_cpp.llama_sampler_sample(sequence.sampler, self._ctx, row)
        reason = sequence.text.feed(token)
        if reason is None:
            sequence.next_token = token
        else:
            self._finish(sequence, reason)

    def _finish(self, sequence: _Sequence, reason: FinishReason) -> None:
        sequence.job.emit(sequence.text.finish(reason))
        self._release(sequence)

    def _release(self, sequence: _Sequence) -> None:
        """Free the slot and its KV cells at once, for the next waiting generation."""
        llama_cpp.llama_memory_seq_rm(self._memory, sequence.slot, -1, -1)
        llama_cpp.llama_sampler_free(sequence.sampler)
        self._running.remove(sequence)
        self._free_slots.append(sequence.slot)

    def _invariant_rows(self, slots: int) -> int:
        """The most rows one llama_decode call may hold with each row's logits bit for bit those it gets alone,
        measured on this model, machine and thread count with a short made-up prompt per slot."""
        vocabulary = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._llama.model))
        probe = [
            _ProbeSequence(slot, [(97 * slot + 13 * n + 5) % vocabulary for n in range(5)]) for slot in range(slots)
        ]
        for sequence in probe:  # the first four tokens, each slot alone
            self._batch.n_tokens = 0
            for position, token in enumerate(sequence.tokens[:-1]):
                _put(self._batch, token, position, sequence.slot, logits=False)
            self._checked_decode()

        def logits(group: list[_ProbeSequence]) -> list[np.ndarray]:
            self._batch.n_tokens = 0
            for sequence in group:
                _put(self._batch, sequence.tokens[-1], len(sequence.tokens) - 1, sequence.slot, logits=True)
            self._checked_decode()
            rows = [
                np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, row), shape=(vocabulary,)).copy()
                for row in range(len(group))
            ]
            for sequence in group:
                llama_cpp.llama_memory_seq_rm(self._memory, sequence.slot, len(sequence.tokens) - 1, -1)
            return rows

        alone = [logits([sequence])[0] for sequence in probe]
        rows = 1
        while rows < slots and all(np.array_equal(row, alone[n]) for n, row in enumerate(logits(probe[: rows + 1]))):
            rows += 1
        llama_cpp.llama_memory_clear(self._memory, True)
        _log.info("decoding up to %d of %d sequences per llama.cpp call keeps their outputs independent", rows, slots)
        return rows

    def _checked_decode(self) -> None:
        if llama_cpp.llama_decode(self._ctx, self._batch) != 0:
            raise FailedPreconditionError("llama.cpp could not decode on the new context", reason="MODEL_LOAD_FAILED")


@dataclass(frozen=True)
class _ProbeSequence:
    slot: int
    tokens: list[int]


def _put(batch: llama_cpp.llama_batch, token: int, position: int, slot: int, *, logits: bool) -> int:
    """Append one token of sequence `slot` to `batch`; its row."""
    row = int(batch.n_tokens)
    batch.token[row] = token
    batch.pos[row] = position  # type: ignore[call-overload]  # llama-cpp-python mistypes it as an array of arrays
    batch.n_seq_id[row] = 1
    batch.seq_id[row][0] = slot
    batch.logits[row] = logits
    batch.n_tokens = row + 1
    return row
