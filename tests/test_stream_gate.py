"""A model's admission gate under cancellation and bursts, turn by turn of the event loop: a waiting call cancelled
just as a slot came for it gives the slot back, and a slot freeing never lets the queue grow past its bound."""

from __future__ import annotations

import asyncio

import pytest

from warpcore.server.core.domain import BackendKind
from warpcore.server.core.errors import ResourceExhaustedError, UnavailableError
from warpcore.server.core.limits import Limits, StreamGate

WAIT_SECONDS = 5.0  # a timeout turns a lost slot (a hang) into a failure


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)  # one turn of the loop: the stimulus here is the turn a cancel lands on


async def hold(gate: StreamGate, until: asyncio.Event) -> None:
    async with gate.slot():
        await until.wait()


async def handed_over(gate: StreamGate) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """A call holding the gate's one slot and one waiting for it; the holder leaves, handing its slot over."""
    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, release))
    await turns(1)
    waiter = asyncio.create_task(hold(gate, asyncio.Event()))
    await turns(3)
    release.set()
    return holder, waiter


@pytest.mark.parametrize("turns_after_release", range(8))
async def test_a_waiting_call_cancelled_as_its_slot_comes_gives_it_back(turns_after_release: int) -> None:
    """A tester's finding: cancelled (its client gone, or its deadline passed) in the turns after a slot was handed
    to it, a waiting call kept the slot for nobody; with every slot so lost, the model hung every call."""
    gate = StreamGate("m", max_active=1, max_waiting=10)
    holder, waiter = await handed_over(gate)
    await turns(turns_after_release)
    waiter.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    async with asyncio.timeout(WAIT_SECONDS), gate.slot():
        assert (gate.active, gate.waiting) == (1, 0)
    assert (gate.active, gate.waiting) == (0, 0)


async def test_a_burst_as_a_slot_frees_does_not_overfill_the_queue() -> None:
    """A tester's finding: callers arriving between a slot's release and its waiter's wake-up saw the slot free and
    queued past max_waiting."""
    gate = StreamGate("m", max_active=1, max_waiting=1)
    holder, waiter = await handed_over(gate)
    await turns(1)  # the holder has left; its slot is handed to the waiter, which has not run yet
    burst = [asyncio.create_task(hold(gate, asyncio.Event())) for _ in range(5)]
    await turns(3)
    refused = [task for task in burst if task.done() and isinstance(task.exception(), ResourceExhaustedError)]
    assert len(refused) == 4
    assert gate.active + gate.waiting == 2  # the waiter running, one of the burst waiting
    for task in [holder, waiter, *burst]:
        task.cancel()
    await asyncio.gather(holder, waiter, *burst, return_exceptions=True)


async def test_after_the_shutdown_began_no_call_starts_even_with_a_slot_free() -> None:
    """A tester's finding: calls that waited for a lazy model's load as the shutdown began reached its gate later,
    found a slot free, and ran through the drain, where calls already queued were refused at once."""
    limits = Limits()
    gate = limits.gate("loaded", BackendKind.LLAMA_CPP)
    limits.close()
    for reached in (gate, limits.gate("loaded during the drain", BackendKind.OPENAI)):
        with pytest.raises(UnavailableError) as refused:
            async with reached.slot():
                raise AssertionError("a generation started during the shutdown")
        assert refused.value.reason == "SHUTTING_DOWN"
        assert (reached.active, reached.waiting) == (0, 0)
