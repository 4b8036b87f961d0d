"""llama.cpp's own log lines (its multimodal library's too) go through Python logging (and so into JSON logs), not
straight to stderr."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import threading
from collections.abc import Callable, Iterator

import llama_cpp
from llama_cpp import mtmd_cpp

_native_log = logging.getLogger("llama.cpp")
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level
_CONTINUATION = 5  # ggml's GGML_LOG_LEVEL_CONT: the line goes on at the previous line's level
# A vocabulary-only model (the tokenizer and chat templates' own, beside the weights) knows no trained context, and
# llama.cpp warns about every context made for it as if it overflowed one: noise on every load, not a warning.
_VOCABULARY_ONLY_NOISE = "n_ctx_train (0)"
_thread = threading.local()


class _NativeLog:
    def __init__(self) -> None:
        self._level = logging.DEBUG

    def __call__(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != _CONTINUATION:
            self._level = _GGML_LEVELS.get(level, logging.DEBUG)
        message = text.decode("utf-8", errors="replace").rstrip()
        stopped: Callable[[], bool] | None = getattr(_thread, "stopped", None)
        quiet = _VOCABULARY_ONLY_NOISE in message or (stopped is not None and stopped())
        level = logging.DEBUG if quiet else self._level
        if message and _native_log.isEnabledFor(level):
            _native_log.log(level, "%s", message)


@contextlib.contextmanager
def stopping_quietly(stopped: Callable[[], bool]) -> Iterator[None]:
    """Within it, once `stopped()` is true, what llama.cpp logs on this thread is a debug line: an abort callback
    that ends a decode on purpose (its caller went away) makes llama.cpp report a failed graph and decode as errors,
    which an operator would chase for a call that ended as asked."""
    _thread.stopped = stopped
    try:
        yield
    finally:
        _thread.stopped = None


@functools.cache
def route_native_log() -> object:
    """Install the route once per process; the callback is returned (and cached) because llama.cpp keeps only a
    pointer to it, which must outlive every model."""
    callback = llama_cpp.llama_log_callback(_NativeLog())
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(callback, ctypes.c_void_p(0))
    return callback
