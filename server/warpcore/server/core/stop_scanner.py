"""Find stop sequences in streamed text without ever emitting part of one: a llama.cpp model's text, and a hosted
API's, whose server may not honour the stop sequences it was sent (adapters/hosted/stop_text.py)."""

from __future__ import annotations

from collections.abc import Iterable


class StopScanner:
    """Feeds text pieces through, holding back any tail that could be the start of a stop sequence."""

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._longest = max((len(stop) for stop in self._stops), default=0)
        self._held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """Return the text safe to emit now, and the stop sequence found (the text before it is emitted)."""
        buffer = self._held + text
        found = [(buffer.find(stop), stop) for stop in self._stops if stop in buffer]
        if found:
            index, stop = min(found)
            self._held = ""
            return buffer[:index], stop
        keep = self._partial_stop_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], None

    def flush(self) -> str:
        """Release the held-back tail once the stream ends without a stop."""
        held, self._held = self._held, ""
        return held

    def _partial_stop_length(self, buffer: str) -> int:
        for length in range(min(len(buffer), self._longest - 1), 0, -1):
            tail = buffer[-length:]
            if any(stop.startswith(tail) for stop in self._stops):
                return length
        return 0
