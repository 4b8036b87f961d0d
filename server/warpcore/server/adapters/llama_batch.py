"""Continuous batching: several generations share one llama.cpp context, one decode step for all of them."""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import llama_cpp

from warpcore.server.adapters.llama_text import Emit, PreparedPrompt, TokenText
from warpcore.server.domain import FinishReason, GenerationParams
from warpcore.server.errors import FailedPreconditionError, UnavailableError

_log = logging.getLogger(__name__)
STEP_TOKENS = 512  # most tokens in one decode step (llama.cpp's n_batch)
# Prompt tokens added to a step while other generations are producing text: larger chunks would stall them.
PREFILL_CHUNK_WHILE_BUSY = 128
MIN_P = 0.05  # as llama-cpp-python's own sampling default, so both paths sample alike

Prepare = Callable[[GenerationParams, int, threading.Event], PreparedPrompt]


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
    logits_index: int = -1  # row of this step's batch whose logits it samples from, -1 if none


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
    served), decodes one token of every running generation plus a chunk of newly admitted prompts in a single
    `llama_decode`, samples each sequence with its own sampler, and frees the slot and KV cells of a
    generation as soon as it finishes or its caller goes away. Only `submit()` and `close()` are called
    from other threads."""

    def __init__(
        self,
        llama: llama_cpp.Llama,
        *,
        slots: int,
        context_size: int,
        prepare: Prepare,
        sampling: SamplingDefaults,
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * slots
        params.n_batch = params.n_ubatch = STEP_TOKENS
        params.n_seq_max = slots
        params.kv_unified = False  # one KV stream per slot: a slot always has its whole context_size
        params.n_threads = llama.context_params.n_threads
        params.n_threads_batch = llama.context_params.n_threads_batch
        self._ctx = llama_cpp.llama_init_from_model(llama.model, params)
        if not self._ctx:
            raise FailedPreconditionError(
                f"llama.cpp could not create a context for {slots} sequences of {context_size} tokens; lower"
                " parallel or context_size",
                reason="MODEL_LOAD_FAILED",
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)
        self._llama = llama
        self._context_size = context_size
        self._prepare = prepare
        self._sampling = sampling
        self._free_slots = list(range(slots - 1, -1, -1))
        self._running: list[_Sequence] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False

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
                if self._fill_batch():
                    self._decode_and_sample()
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

    def _fill_batch(self) -> bool:
        batch = self._batch
        batch.n_tokens = 0
        generating = [sequence for sequence in self._running if sequence.next_token is not None]
        for sequence in generating:
            assert sequence.next_token is not None
            sequence.logits_index = self._add(sequence, sequence.next_token, logits=True)
        room = STEP_TOKENS - batch.n_tokens
        for sequence in self._running:
            if sequence.next_token is not None or room <= 0:
                continue
            chunk = min(len(sequence.prompt.tokens) - sequence.prefilled, room)
            if generating:
                chunk = min(chunk, PREFILL_CHUNK_WHILE_BUSY)
            end = sequence.prefilled + chunk
            last = end == len(sequence.prompt.tokens)
            for token in sequence.prompt.tokens[sequence.prefilled : end]:
                sequence.logits_index = self._add(sequence, token, logits=False)
            sequence.prefilled = end
            if last:
                batch.logits[sequence.logits_index] = True
            else:
                sequence.logits_index = -1
            room -= chunk
        return int(batch.n_tokens) > 0

    def _add(self, sequence: _Sequence, token: int, *, logits: bool) -> int:
        batch, row = self._batch, int(self._batch.n_tokens)
        batch.token[row] = token
        batch.pos[row] = sequence.position
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = sequence.slot
        batch.logits[row] = logits
        batch.n_tokens = row + 1
        sequence.position += 1
        return row

    def _decode_and_sample(self) -> None:
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            # The step's sequences are in an unknown state: end them all rather than emit wrong text.
            _log.error("llama_decode failed with status %d for %d sequences", status, len(self._running))
            for sequence in list(self._running):
                sequence.job.emit(UnavailableError("the local model failed to decode; retry", reason="DECODE_FAILED"))
                self._release(sequence)
            return
        for sequence in list(self._running):
            if sequence.logits_index < 0:
                continue
            token = llama_cpp.llama_sampler_sample(sequence.sampler, self._ctx, sequence.logits_index)
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
