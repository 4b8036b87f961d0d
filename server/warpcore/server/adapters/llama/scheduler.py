"""Continuous batching: the generations of one model share one llama.cpp context, one decode step for all."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import heapq
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Literal

import llama_cpp

from warpcore.server.adapters.llama.context import STEP_TOKENS, NativeContext
from warpcore.server.adapters.llama.invariance import invariant_rows
from warpcore.server.adapters.llama.job import IDLE_SECONDS, PAUSED_WAIT, Job, Running, all_behind
from warpcore.server.adapters.llama.native_threads import lower_compute_priority
from warpcore.server.adapters.llama.prefill import PIECES, PrefillCalls
from warpcore.server.adapters.llama.prefix_cache import PrefixCache
from warpcore.server.adapters.llama.prompt_reuse import NOT_CACHED, PromptReuse
from warpcore.server.adapters.llama.vision import ImagePrompt, ImageSpan
from warpcore.server.core.domain import Finish, FinishReason
from warpcore.server.core.errors import UnavailableError, WarpcoreError
from warpcore.server.core.occupancy import Occupancy
from warpcore.server.core.tokens import PromptUsage

_log = logging.getLogger(__name__)
_STOPPED = "the local model stopped on an internal error (see the server log); unload it and load it again"


class BatchScheduler:
    """Runs up to `slots` generations on one native context, each with a KV cache of `context_size` tokens.

    Its batching thread (`_serve`, started by a generation, ended after IDLE_SECONDS without work) steps: every
    step it admits waiting jobs into free slots (first come, first served), decodes the next token of every running
    generation, adds a piece of each newly admitted prompt, samples each sequence with its own sampler, and frees
    the slot and KV cells of a generation as soon as it finishes or its caller goes away; a generation whose caller
    is behind (job.Flow) is passed over until it catches up, unless the model is unloading, which ends every
    generation as before. The public methods are called from other threads. A step decodes its generations in calls
    of at most `rows_per_call` rows, the count measured at load to give every row exactly the logits it gets alone
    (invariance.py): so a generation's text never depends on its neighbours.

    Each slot has a KV stream of its own, and llama.cpp decodes the rows of a call in one pass only while their
    sequence ids rise one by one (llama_batch_allocr::split_equal); otherwise it splits the call into a pass per
    run, each about as slow as the whole. So generations run in slot order, and a new one takes the lowest free
    slot, which keeps the running slots together."""

    def __init__(
        self,
        native: NativeContext,
        vocabulary: llama_cpp.Llama,
        calls: PrefillCalls,
        *,
        slots: int,
        cache: PrefixCache | None,
    ) -> None:
        self._native = native
        self._calls = calls
        self._vocabulary = vocabulary
        self.cache = cache
        self.prompts = None if cache is None else PromptReuse(native, calls, cache, context_size=native.cells // slots)
        self._vocab = llama_cpp.llama_model_get_vocab(vocabulary.model)
        self._free_slots = list(range(slots))  # a heap: the lowest free slot first
        self._running: list[Running] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._refusal: Callable[[], WarpcoreError] | None = None
        self._thread: threading.Thread | None = None  # the batching thread, while there is one
        self._freed = threading.Event()
        self.rows_per_call = invariant_rows(native, slots)
        self.occupancy = Occupancy(cells=native.cells)
        self.vocabulary_size = int(native.vocabulary_size)

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._refusal is not None:
                raise self._refusal()
            if self._closing:
                raise UnavailableError("the model is being unloaded", reason="MODEL_UNLOADING")
            self._waiting.append(job)
            self._ensure_thread()
            self._wake.notify()

    def withdraw(self) -> None:
        """Forget the waiting generations whose callers went, at once: the queue the metrics show is of callers."""
        with self._wake:
            self._waiting = collections.deque(job for job in self._waiting if not job.stop.is_set())
            self.occupancy.waiting = len(self._waiting)

    def close(self) -> None:
        """Let running and waiting generations finish, then free the context on the batching thread."""
        with self._wake:
            self._closing = True
            self._ensure_thread()
            self._wake.notify()

    def refuse_waiting(self, refusal: Callable[[], WarpcoreError]) -> None:
        """Refuse the generations waiting for a slot, and any submitted later, with `refusal`: the server is shutting
        down, and they would only wait for its grace to end, or the model is being unloaded; those running go on."""
        with self._wake:
            self._refusal = refusal
            waiting, self._waiting = self._waiting, collections.deque()
            self.occupancy.waiting = 0
        for job in waiting:
            job.emit(refusal())

    def join(self) -> None:
        """Wait, after `close()`, until the context is freed."""
        self._freed.wait()

    def _ensure_thread(self) -> None:
        """Start a batching thread unless one is running (called with `_wake` held)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="llama-cpp-batch", daemon=True)
            self._thread.start()

    def _serve(self) -> None:  # this and all below run on the batching thread, at the priority of computing ones
        """Step while there is work. Idle for IDLE_SECONDS, the thread ends and the context stays for the next
        one; closed (or failed), the context is freed."""
        lower_compute_priority()
        idle = False
        try:
            while (state := self._admit()) in ("step", "ahead"):
                if self.prompts is not None and state == "ahead":
                    self.prompts.decode_ahead()
                    continue
                self._drop_cancelled()
                self._step()
                self._count()
            idle = state == "idle"
        except Exception:  # noqa: BLE001 - its generations are told below; what is left is to say why in the log
            _log.exception("the batch scheduler stopped")
        finally:
            if not idle:
                self._stop()

    def _stop(self) -> None:
        # Nobody is left running or waiting unless the loop failed: then nobody must wait forever, nor call it later.
        stopped = functools.partial(UnavailableError, _STOPPED, reason="MODEL_FAILED")
        for sequence in self._running:
            sequence.job.emit(stopped())
            sequence.sampler.free()
        with self._wake:
            self._closing = True
            self._refusal = self._refusal or stopped
            for job in self._waiting:
                job.emit(stopped())
        self._native.free()
        self._freed.set()

    def _count(self) -> None:
        """Publish what the model is doing, once a step, for metrics (not the waiting whose callers went away)."""
        self.occupancy.running = len(self._running)
        with self._wake:
            self.occupancy.waiting = sum(not job.stop.is_set() for job in self._waiting)
        self.occupancy.cells_used = sum(sequence.position for sequence in self._running)

    def _admit(self) -> Literal["step", "ahead", "idle", "closed"]:
        """Move waiting jobs into free slots: "step"; with nothing to run, "ahead" while a kept prompt waits to be
        decoded ahead (prompt_reuse.py); or why this thread ends: closing with nothing left to do, or idle for
        IDLE_SECONDS (decided with `_wake` held, so that a generation submitted meanwhile starts a thread of its
        own)."""
        with self._wake:
            while not self._running and not self._waiting:
                if self._closing:
                    return "closed"
                if self.prompts is not None and (delay := self.prompts.ahead_in()) is not None:
                    if delay <= 0:
                        return "ahead"
                    self._wake.wait(delay)
                    continue
                if not self._wake.wait(IDLE_SECONDS) and not (self._waiting or self._closing):
                    self._thread = None
                    return "idle"
            if not (self._closing or (self._waiting and self._free_slots)) and all_behind(self._running):
                self._wake.wait(PAUSED_WAIT)  # nothing to do until a caller reads: woken by a new one, else soon
            count = min(len(self._waiting), len(self._free_slots))
            admitted = [self._waiting.popleft() for _ in range(count)]
        for index, job in enumerate(admitted):
            try:
                self._start(job)
            except Exception as error:  # the loop stops (_serve): this job hears why, those after it with the waiting
                job.emit(error)
                with self._wake:
                    self._waiting.extendleft(reversed(admitted[index + 1 :]))
                raise
        return "step"

    def _start(self, job: Job) -> None:
        if job.stop.is_set():  # stopped while waiting
            job.emit(Finish(FinishReason.CANCELLED))
            return
        if (prepared := job.prepare(self._vocabulary, self._vocab, self._native.vocabulary_size)) is None:
            return
        sampler, text = prepared
        prompt, slot = job.prompt, heapq.heappop(self._free_slots)
        start = NOT_CACHED if self.prompts is None else self.prompts.start(slot, prompt.tokens, prompt.piece_keys)
        cached = start.hit.length
        sequence = Running(job, slot, prompt, text, sampler, start, cached, cached)
        bisect.insort(self._running, sequence, key=lambda running: running.slot)
        # Published before the caller hears of its generation, so that whoever it tells finds it counted as running.
        self._count()
        job.emit(PromptUsage(len(prompt.tokens), cached_prompt_tokens=cached))

    def _drop_cancelled(self) -> None:
        for sequence in list(self._running):
            if sequence.job.stop.is_set():
                self._finish(sequence, FinishReason.CANCELLED)

    def _step(self) -> None:
        running = [sequence for sequence in self._running if self._closing or not sequence.passed_over()]
        generating = [(sequence, sequence.next_token) for sequence in running if sequence.next_token is not None]
        prefilling = [sequence for sequence in running if sequence.next_token is None]
        for start in range(0, len(generating), self.rows_per_call):
            group = generating[start : start + self.rows_per_call]
            rows = [self._add(sequence, token, logits=True) for sequence, token in group]
            sequences = [sequence for sequence, _ in group]
            if self._decode(sequences):
                for sequence, row in zip(sequences, rows, strict=True):
                    self._sample(sequence, row)
        for sequence in prefilling:
            tokens = sequence.prompt.tokens
            images = sequence.prompt.images
            if images is not None and (image := images.at(sequence.prefilled)) is not None:
                self._decode_image(sequence, images, image)  # never the prompt's end: text follows
                continue
            start = sequence.prefilled
            calls = self._calls if images is None else PIECES
            end = calls.end(start, sequence.prompt.text_end(start), alone=not generating)
            end = end if self.prompts is None else self.prompts.call_end(sequence.start, start, end, len(tokens))
            rows = [self._add(sequence, token, logits=False) for token in tokens[start:end]]
            sequence.prefilled = end
            if end == len(tokens):
                self._native.batch.logits[rows[-1]] = True
            if not self._decode([sequence]):
                continue
            if self.prompts is not None:
                sequence.start = self.prompts.passed(sequence.slot, sequence.prompt, sequence.start, end)
            if end == len(tokens):
                self._sample(sequence, rows[-1])

    def _add(self, sequence: Running, token: int, *, logits: bool) -> int:
        sequence.position += 1
        return self._native.put(token, sequence.position - 1, sequence.slot, logits=logits)

    def _decode_image(self, sequence: Running, images: ImagePrompt, image: ImageSpan) -> None:
        """Decode an image's embeddings into the sequence, in llama.cpp calls of their own, as a prefill piece."""
        position = images.decode(image, self._native.ctx, sequence.position, sequence.slot, STEP_TOKENS)
        if position < 0:
            self._failed([sequence])
            return
        sequence.position = position
        sequence.prefilled += image.tokens

    def _decode(self, group: Sequence[Running]) -> bool:
        return self._native.decode() or self._failed(group)

    def _failed(self, group: Sequence[Running]) -> bool:
        # These sequences' caches are in an unknown state: end them rather than emit wrong text.
        _log.error("llama_decode failed for %d sequences", len(group))
        for sequence in group:
            sequence.job.emit(UnavailableError("the local model failed to decode; retry", reason="DECODE_FAILED"))
            self._release(sequence)
        return False

    def _sample(self, sequence: Running, row: int) -> None:
        try:
            reason = sequence.sample(self._native.ctx, row, self._native.vocabulary_size)
        except Exception as error:  # noqa: BLE001 - this generation's failure, told to its caller; the others go on
            sequence.job.emit(error)
            self._release(sequence)
            return
        if reason is not None:
            self._finish(sequence, reason)

    def _finish(self, sequence: Running, reason: FinishReason) -> None:
        finish = sequence.text.finish(reason)
        # Kept here, off the way to the first token and never a call boundary of its own; before the caller hears
        # of the end, so that whoever it tells finds the prompt in the cache.
        if self.prompts is not None:
            prompt = sequence.prompt
            answer = sequence.answer if reason is not FinishReason.CANCELLED else ()
            self.prompts.end(
                sequence.slot, prompt.tokens, prompt.piece_keys, sequence.start, sequence.prefilled, answer
            )
        self._release(sequence)
        self._count()  # published before the caller hears of the end, as at its start: its slot is free
        sequence.job.emit(dataclasses.replace(finish, cached_prompt_tokens=sequence.start.hit.length))

    def _release(self, sequence: Running) -> None:
        """Free the slot and its KV cells at once (but those of a prompt it keeps), for the next waiting generation."""
        if self.prompts is None or not self.prompts.holds(sequence.slot):
            self._native.forget(sequence.slot)
        sequence.sampler.free()
        self._running.remove(sequence)
        heapq.heappush(self._free_slots, sequence.slot)
