"""How the garbage collector runs in a serving process.

Python's full collections walk every object that lives in its oldest generation. A server's heap is mostly what it
imported once and keeps for good (grpc, protobuf descriptors, the vendor SDKs and their pydantic types: about a
quarter of a million objects with both SDKs), so each full collection paused every stream and every decode step for
a walk of objects that can never be garbage. Frozen, those objects are left out of every collection; only what
serving allocates is walked.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Python collects its youngest generation each time 700 more objects were allocated than freed. A streamed token
# allocates hundreds of short-lived objects (events, frames, strings), nearly all freed by reference counting, so the
# default collects every few tokens and promotes whatever is in flight at that moment to older generations, which
# are walked again later. A larger threshold collects young objects less often, after most of them are gone.
YOUNG_COLLECTION_THRESHOLD = 10_000


@contextmanager
def serving_heap() -> Iterator[None]:
    """Collect once, then freeze what start-up left (modules, settings, the startup models' objects) and collect
    young objects less often, while serving; the collector's settings are restored after."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def keep_imported() -> None:
    """Freeze what is alive now, after a module was imported while serving (a vendor SDK, when its backend is first
    used): its objects stay for the life of the process. Called once per such module, so what else it freezes, the
    objects of requests in flight at that moment, is bounded: reference counting still frees them, and only those in
    reference cycles are never collected."""
    gc.freeze()
