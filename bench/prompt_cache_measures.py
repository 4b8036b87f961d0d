"""The prompt-cache bench's workload and what it measures (time to first token of every turn and stream, and a
warpcore server's memory), and the statistics its report takes of them: medians over turns, callers and rounds, and
ratios paired round by round."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import median
from bench.local_contenders import StreamTiming, Workload


@dataclass(frozen=True)
class CacheWorkload:
    model: Workload
    """The model and its context (`slots`: the callers of the shared system prompt)."""
    rules: int
    """The system prompt's length in house rules."""
    turns: int
    answer_tokens: int
    rounds: int
    pause: float = 1.0
    """Seconds between a paced conversation's turns: a person reading the answer and typing the next question."""
    paced_rounds: int = 2

    @property
    def callers(self) -> int:
        return self.model.slots


@dataclass(frozen=True)
class Memory:
    """A warpcore server's memory after load and after prompts that fill its cache (gauges 0: no cache)."""

    name: str
    capacity: int
    cached: int
    prompts: int
    rss_loaded: int
    rss_filled: int


@dataclass
class Measured:
    """Per (contender, round): a conversation's turns, or a shared-prompt round's streams (the warm-up first, the
    caller alone after the concurrent ones last)."""

    chat: dict[tuple[str, int], list[StreamTiming]] = field(default_factory=dict)
    paced: dict[tuple[str, int], list[StreamTiming]] = field(default_factory=dict)
    shared: dict[tuple[str, int], list[StreamTiming]] = field(default_factory=dict)
    memory: list[Memory] = field(default_factory=list)
    chat_names: list[str] = field(default_factory=list)
    shared_names: list[str] = field(default_factory=list)


Statistic = Callable[[list[StreamTiming]], float]


def later_turns(turns: list[StreamTiming]) -> float:
    """Median time to first token of turns 2 and later: what the cache is for."""
    return median(turn.first_token for turn in turns[1:])


def concurrent(streams: list[StreamTiming]) -> list[StreamTiming]:
    """The callers at once, between the warm-up and the later caller."""
    return streams[1:-1]


def callers(streams: list[StreamTiming]) -> float:
    """Median time to first token of the callers at once after the warm-up."""
    return median(stream.first_token for stream in concurrent(streams))


def later_caller(streams: list[StreamTiming]) -> float:
    """Time to first token of the caller alone after them, whose prompt parts from theirs where they part."""
    return streams[-1].first_token


def over_rounds(runs: dict[tuple[str, int], list[StreamTiming]], name: str, rounds: int, statistic: Statistic) -> float:
    return median(statistic(runs[name, index]) for index in range(rounds))


def paired(
    runs: dict[tuple[str, int], list[StreamTiming]], slower: str, faster: str, rounds: int, statistic: Statistic
) -> float:
    """Median over rounds of slower's / faster's statistic, each pair measured in the same round."""
    return median(statistic(runs[slower, index]) / statistic(runs[faster, index]) for index in range(rounds))
