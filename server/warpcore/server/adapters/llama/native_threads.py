"""Where llama.cpp computes outside a model's batching thread: on a thread that ends with the work.

llama.cpp's CPU backend runs each computation on an OpenMP team led by the calling thread, and the team's other
threads stay with that thread until it ends. libgomp counts every such thread, and once the process holds more of
them than it has CPUs it makes them all give up waiting after a few spins and sleep instead: every one of the
hundreds of barriers in a decode step then goes through the kernel, which slows every decode step. So
the batching thread is the one long-lived team of a model; loading (which measures the batch sizes it may decode),
embedding and releasing each run on a thread of their own, whose team ends with it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_Result = TypeVar("_Result")


def on_passing_thread(work: Callable[[], _Result]) -> _Result:
    """`work()`, run on a new thread that ends before this returns (its result, or its exception raised here)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp-once") as passing:
        return passing.submit(work).result()
