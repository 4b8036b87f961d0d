"""The prompt-cache bench's report of what it measured (bench/prompt_cache_measures.py): tables of time to first
token per contender and turn, cached prompt tokens, paired ratios and memory, its targets, charts and description."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from bench.charts import bar_chart, line_chart
from bench.harness import BenchResult, Cell, Table, Target, median
from bench.local_contenders import THREADS, StreamTiming
from bench.prompt_cache_measures import (
    CacheWorkload,
    Measured,
    callers,
    concurrent,
    later_caller,
    later_turns,
    over_rounds,
    paired,
)

NAME = "prompt_cache"
MIB = 1024 * 1024


def cached(streams: Sequence[StreamTiming]) -> Cell:
    counts = [stream.cached_tokens for stream in streams]
    return "n/a" if any(count is None for count in counts) else round(median(count or 0 for count in counts))


def after_answers(conversations: Sequence[list[StreamTiming]]) -> Cell:
    """How many turns took more of their prompt from the cache than the whole prompt of the turn before: some of
    its answer too."""
    pairs = [pair for turns in conversations for pair in itertools.pairwise(turns)]
    if any(turn.cached_tokens is None or before.prompt_tokens is None for before, turn in pairs):
        return "n/a"
    return f"{sum((turn.cached_tokens or 0) > (before.prompt_tokens or 0) for before, turn in pairs)}/{len(pairs)}"


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def report(workload: CacheWorkload, measured: Measured, out: Path) -> BenchResult:
    rounds, turns = workload.rounds, workload.turns
    cache, no_cache, xllamacpp = measured.chat_names
    chat = measured.chat
    chat_rows: list[list[Cell]] = []
    for name in measured.chat_names:
        conversations = [chat[name, index] for index in range(rounds)]
        same = sum(
            ours.text == theirs.text
            for index in range(rounds)
            for ours, theirs in zip(chat[name, index], chat[no_cache, index], strict=True)
        )
        chat_rows.append(
            [
                name,
                ms(median(turns[0].first_token for turns in conversations)),
                ms(over_rounds(chat, name, rounds, later_turns)),
                cached([turn for turns in conversations for turn in turns[1:]]),
                conversations[0][-1].prompt_tokens or "n/a",
                f"{same}/{rounds * turns}",
            ]
        )
    chat_table = Table(
        caption=f"Multi-turn chat: time to first token, medians over {rounds} rounds",
        columns=[
            "contender",
            "TTFT turn 1 ms",
            f"TTFT turns 2-{turns} ms",
            f"cached prompt tokens, turns 2-{turns}",
            f"prompt tokens at turn {turns}",
            "turns with warpcore no cache's text",
        ],
        rows=chat_rows,
    )
    paced_rounds, paced = workload.paced_rounds, measured.paced
    paced_table = Table(
        caption=f"Multi-turn chat at a person's pace, {workload.pause:g} s between turns: time to first token,"
        f" medians over {paced_rounds} rounds",
        columns=[
            "contender",
            f"TTFT turns 2-{turns} ms",
            f"cached prompt tokens, turns 2-{turns}",
            "turns that start after the answer before",
        ],
        rows=[
            [
                name,
                ms(over_rounds(paced, name, paced_rounds, later_turns)),
                cached([turn for index in range(paced_rounds) for turn in paced[name, index][1:]]),
                after_answers([paced[name, index] for index in range(paced_rounds)]),
            ]
            for name in (cache, xllamacpp)
        ],
    )
    shared = measured.shared
    batched, batched_no_cache, xllamacpp_slots = measured.shared_names
    shared_rows: list[list[Cell]] = [
        [
            name,
            ms(median(shared[name, index][0].first_token for index in range(rounds))),
            ms(over_rounds(shared, name, rounds, callers)),
            ms(median(max(s.first_token for s in concurrent(shared[name, index])) for index in range(rounds))),
            cached([stream for index in range(rounds) for stream in concurrent(shared[name, index])]),
            ms(over_rounds(shared, name, rounds, later_caller)),
            cached([shared[name, index][-1] for index in range(rounds)]),
        ]
        for name in measured.shared_names
    ]
    shared_table = Table(
        caption=f"Shared system prompt, {workload.callers} callers at once after a warm-up caller, then one more"
        f" alone: time to first token, medians over {rounds} rounds",
        columns=[
            "contender",
            "warm-up TTFT ms",
            "callers' TTFT ms",
            "slowest caller's TTFT ms",
            "cached prompt tokens",
            "later caller's TTFT ms",
            "later caller's cached prompt tokens",
        ],
        rows=shared_rows,
    )
    speedup = paired(chat, no_cache, cache, rounds, later_turns)
    versus_llama = paired(chat, xllamacpp, cache, rounds, later_turns)
    versus_slots = paired(shared, xllamacpp_slots, batched, rounds, callers)
    ratio_rows: list[list[Cell]] = [
        ["multi-turn chat", f"{no_cache} / {cache}", round(speedup, 3)],
        ["multi-turn chat", f"{xllamacpp} / {cache}", round(versus_llama, 3)],
        [
            "multi-turn chat at a person's pace",
            f"{xllamacpp} / {cache}",
            round(paired(paced, xllamacpp, cache, paced_rounds, later_turns), 3),
        ],
        [
            "shared system prompt",
            f"{batched_no_cache} / {batched}",
            round(paired(shared, batched_no_cache, batched, rounds, callers), 3),
        ],
        ["shared system prompt", f"{xllamacpp_slots} / {batched}", round(versus_slots, 3)],
        [
            "shared system prompt, a later caller alone",
            f"{xllamacpp_slots} / {batched}",
            round(paired(shared, xllamacpp_slots, batched, rounds, later_caller), 3),
        ],
    ]
    ratios = Table(
        caption="Time to first token ratios (higher: warpcore's cache faster), each the median over rounds of a pair"
        " measured in the same round",
        columns=["workload", "ratio", "value"],
        rows=ratio_rows,
    )
    memory = Table(
        caption="warpcore's memory: after load, and with the cache full at its default cap (the same prompts to the"
        " server without a cache)",
        columns=[
            "contender",
            "cache capacity tokens",
            "tokens in cache",
            "prompts",
            "RSS after load MiB",
            "RSS with the cache full MiB",
        ],
        rows=[
            [m.name, m.capacity, m.cached, m.prompts, round(m.rss_loaded / MIB, 1), round(m.rss_filled / MIB, 1)]
            for m in measured.memory
        ],
    )
    targets = [
        Target(f"multi-turn chat: TTFT turns 2-{turns}, {no_cache} / {cache}", round(speedup, 3), ">=", 5.0, "x"),
        Target(f"multi-turn chat: TTFT turns 2-{turns}, {xllamacpp} / {cache}", round(versus_llama, 3), ">=", 1.0, "x"),
        Target(
            f"shared system prompt: callers' TTFT, {xllamacpp_slots} / {batched}",
            round(versus_slots, 3),
            ">=",
            2.0,
            "x",
        ),
    ]
    later = list(range(2, turns + 1))
    charts = [
        line_chart(
            out / f"{NAME}_turns.png",
            "Multi-turn chat: time to first token by turn (median over rounds)",
            "turn",
            "ms (log scale)",
            later,
            {
                name: [
                    median(chat[name, index][turn - 1].first_token for index in range(rounds)) * 1000 for turn in later
                ]
                for name in measured.chat_names
            },
            log_y=True,
        ),
        bar_chart(
            out / f"{NAME}_shared.png",
            f"Shared system prompt: {workload.callers} callers' median TTFT (ms)",
            "ms",
            {name: over_rounds(shared, name, rounds, callers) * 1000 for name in measured.shared_names},
        ),
    ]
    model = workload.model
    system_tokens = measured.shared[batched, 0][0].prompt_tokens
    description = (
        f"`{model.model_path.name}`, greedy (temperature 0), raw completions (the same text for every contender),"
        f" {THREADS} threads and {model.context} tokens of context per sequence for everyone. The system prompt is"
        f" a hotel concierge's {workload.rules} house rules ({system_tokens} tokens with a first question, as warpcore"
        " counts them), a new one every round, so that no round starts from an earlier one's cache. Within a round"
        " the contenders run one after another in an order that rotates; ratios are taken pair by pair within a"
        " round. TTFT is from sending the request to its first text.\n\n"
        f"- **Multi-turn chat**: {turns} turns of {workload.answer_tokens} generated tokens; each turn's prompt is"
        " the previous prompt, the contender's own answer and the next question. One conversation at a time, so"
        f" every server has one slot: **{cache}** (`parallel = 1`, prompt cache at its default cap, the context"
        " size; its slot keeps the cells of each prompt, but for a last piece of fewer than 8 tokens, never the"
        " answer's, decoded a token per call, so that the next turn gets the text it gets without a cache: it"
        " prefills the answer and the question in one call),"
        f" **{no_cache}** (`prompt_cache_tokens = 0`), **{xllamacpp}** (llama.cpp's server from the `xllamacpp`"
        f" wheel, `cache_prompt` on: its slot keeps the last request's cells, answer included)."
        " llama-cpp-python's server with its RAM cache is left out: on Gemma it cut its stream mid-answer on a later"
        " turn.\n"
        f"- **Multi-turn chat at a person's pace**: the same, {workload.pause:g} s between a turn's last token and the"
        f" next turn, {cache} and {xllamacpp}, in rounds of their own after the others; warpcore decodes the answer"
        " ahead into the slot while it waits, in calls whose cells are those of the next prompt's own prefill, so"
        " that the next turn prefills only its question (no target: the issue's is the chat above).\n"
        f"- **Shared system prompt**: one caller, then {workload.callers} at once, then one more alone, each with its"
        f" own question after the same system prompt, on **{batched}** (cache on), **{batched_no_cache}** and"
        f" **{xllamacpp_slots}** (llama.cpp's server caches per slot: the callers on other slots than the first"
        " caller's prefill the shared part again; a later caller goes to the slot whose cells match its prompt"
        " best). Gemma's sliding window lets warpcore keep a beginning only whole, every 512 tokens and where a"
        " prompt parts from one saved before: the callers at once start from the last 512-token mark of the shared"
        " part, the later caller from where the prompts part.\n"
        "- **Memory**: RSS (from /proc) of both warpcore servers of the chat after load and a short warm-up"
        " request, and again after the chat rounds and then distinct prompts, each sized to the room left, until"
        " `warpcore_prompt_cache_tokens` is within a prefill piece of `warpcore_prompt_cache_capacity_tokens` or"
        " stops growing (the same prompts to the server without a cache).\n\n"
        "Cached prompt tokens are the servers' own counts (warpcore's `Usage.cached_prompt_tokens`, the OpenAI"
        " usage's `prompt_tokens_details.cached_tokens` where a server sends it, else n/a). The last column of the"
        " chat table counts the turns whose text equals warpcore without its cache, turn for turn."
    )
    return BenchResult(
        title="Prompt cache: multi-turn chat and a shared system prompt, warpcore against xllamacpp",
        description=description,
        tables=[chat_table, paced_table, shared_table, ratios, memory],
        targets=targets,
        charts=[chart.name for chart in charts],
    )
