"""Where llama.cpp computes outside a model's batching thread: on a thread that ends with the work.

llama.cpp's CPU backend runs each computation on an OpenMP team led by the calling thread, and the team's other
threads stay with that thread until it ends. libgomp counts every such thread, and once the process holds more of
them than it has CPUs it makes them all give up waiting after a few spins and sleep instead: every one of the
hundreds of barriers in a decode step then goes through the kernel, which slows every decode step. So
the batching thread is the one long-lived team of a model; loading (which measures the batch sizes it may decode),
embedding and releasing each run on a thread of their own, whose team ends with it.

Each of those threads runs, with the team it leads, at a lower priority than the server's other threads
(COMPUTE_NICENESS)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_Result = TypeVar("_Result")

COMPUTE_NICENESS = 5
"""How much nicer than the server's other threads (Linux niceness, per thread, inherited by the OpenMP team a thread
starts) llama.cpp's computing threads run. The team's threads spin on every core through a decode step; at equal
priority the event loop, woken to write a token's frame or read a request, waited for a computing thread's time
slice to end, milliseconds. Nicer, they give it the core at once: the event loop's work is as short as before and
the decode step loses no more time to it, only sooner."""


def lower_compute_priority() -> None:
    """Run this thread, and the OpenMP team it starts from now on, COMPUTE_NICENESS below its priority so far; a
    no-op where niceness is the process's, not each thread's (every system but Linux), or may not be changed."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + COMPUTE_NICENESS)


def on_passing_thread(work: Callable[[], _Result]) -> _Result:
    """`work()`, run on a new thread that ends before this returns (its result, or its exception raised here), at
    the priority of computing threads."""

    def niced() -> _Result:
        lower_compute_priority()
        return work()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp-once") as passing:
        return passing.submit(niced).result()
