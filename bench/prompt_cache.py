"""Prompt cache, greedy, raw completions: a multi-turn chat and callers sharing a system prompt, warpcore with and
without its cache against xllamacpp (llama.cpp's server); and warpcore's memory with its cache
full."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import free_port, rss_bytes
from bench.local_contenders import Contender, StreamTiming, WarpcoreServer, Workload, xllamacpp_server
from bench.local_model import bounded
from bench.prompt_cache_measures import CacheWorkload, Measured, Memory
from bench.prompt_cache_report import NAME, report
from warpcore.server.adapters.llama.context import PREFILL_PIECE as PIECE  # how near its cap a full cache is

TOPICS = (
    "the harbour ferries",
    "the night market",
    "late check-out",
    "the rooftop pool",
    "lost luggage",
    "the museum pass",
    "the airport shuttle",
    "room service",
    "the fitness room",
    "guided walks in the old town",
    "the laundry",
    "parking for rental cars",
    "the spa",
)
ACTIONS = (
    "check the printed timetable at the front desk",
    "offer to call ahead and reserve a place",
    "explain the price before anything else",
    "give the walking directions from the main entrance",
    "mention the quieter hours of the afternoon",
    "ask whether they travel with children",
    "write the details on a hotel card",
)
CLOSINGS = (
    "thank them for staying with us",
    "remind them that the desk is open all night",
    "suggest the breakfast terrace",
    "wish them a pleasant evening",
    "offer an umbrella if it looks like rain",
)
ASKS = (
    "Where can I get breakfast before six in the morning?",
    "Is there a pharmacy open on Sunday near the hotel?",
    "How do I get to the central station with two suitcases?",
    "Can you recommend a quiet place to work for a few hours?",
    "What time does the rooftop pool close tonight?",
    "Could you book a table for four somewhere with local food?",
    "Is the old town safe to walk through after dark?",
    "How much does the airport shuttle cost for a family?",
    "Where should we go if it rains all afternoon?",
    "Can I leave my bags here after I check out?",
    "Which museum is best for children who like trains?",
    "Is there a market where the fishermen sell in the morning?",
    "What is the fastest way to the beach by public transport?",
)


def system_prompt(session: str, rules: int) -> str:
    """A concierge's house rules, `rules` of them (about 32 Gemma tokens each); `session` comes first, so that
    prompts of different sessions share no cached beginning."""
    lines = [f"Session {session}. You are the concierge of the Grand Meridian Hotel. Follow these house rules."]
    for index in range(rules):
        topic, action, closing = TOPICS[index % 13], ACTIONS[index * 5 % 7], CLOSINGS[index * 3 % 5]
        lines.append(f"Rule {index + 1}: when a guest asks about {topic}, {action}, and {closing}.")
    return "\n".join(lines) + "\n\n"


PATIENCE = 600.0
"""Seconds a contender may take over a request before it counts as hung: a prefill of thousands of tokens on a
machine that others load too can take minutes."""
MAX_FILL_PROMPTS = 32


def question(index: int) -> str:
    return f"User: {ASKS[index % len(ASKS)]}\nAssistant:"


class MeteredWarpcore(WarpcoreServer):
    """warpcore with its Prometheus endpoint on, to read its prompt cache's gauges."""

    def __init__(self, workload: Workload, parallel: int, name: str, cache_tokens: int | None) -> None:
        self.metrics_port = free_port()
        metrics = ("--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1")
        local = {} if cache_tokens is None else {"prompt_cache_tokens": cache_tokens}
        super().__init__(workload, parallel, name=name, local=local, arguments=metrics)

    async def gauges(self) -> dict[str, float]:
        """The prompt cache's gauges now: tokens held and capacity (none when the cache is off)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response,
        ):
            text = await response.text()
        wanted = ("warpcore_prompt_cache_tokens", "warpcore_prompt_cache_capacity_tokens")
        families = text_string_to_metric_families(text)
        return {family.name: family.samples[0].value for family in families if family.name in wanted and family.samples}


async def patient(contender: Contender, streams: list[Coroutine[Any, Any, StreamTiming]]) -> list[StreamTiming]:
    return await bounded(contender, streams, PATIENCE)


async def started(lineup: Sequence[Contender], logs: Path) -> None:
    await asyncio.gather(*(contender.start(logs) for contender in lineup))
    for contender in lineup:  # first-call costs (buffers, caches) stay out of the figures
        await patient(contender, [contender.generate(system_prompt("warm-up", 1) + question(0), 4)])


async def conversation(
    contender: Contender, workload: CacheWorkload, session: str, pause: float = 0.0
) -> list[StreamTiming]:
    """One chat, each turn's prompt being the previous one, its answer and the next question, `pause` seconds
    after the answer."""
    text, turns = system_prompt(session, workload.rules), []
    for turn in range(workload.turns):
        if turn:
            await asyncio.sleep(pause)  # the person's reading and typing, not a wait for the server
        text += question(turn)
        (timing,) = await patient(contender, [contender.generate(text, workload.answer_tokens)])
        turns.append(timing)
        text += timing.text + "\n\n"
    return turns


async def callers(contender: Contender, workload: CacheWorkload, session: str) -> list[StreamTiming]:
    """A warm-up caller, then `callers` at once, then one more alone, each with its own question after the same
    system prompt."""
    system = system_prompt(session, workload.rules)
    (warm,) = await patient(contender, [contender.generate(system + question(0), workload.answer_tokens)])
    together = [
        contender.generate(system + question(1 + index), workload.answer_tokens) for index in range(workload.callers)
    ]
    concurrent = await patient(contender, together)
    later = system + question(1 + workload.callers)
    return [warm, *concurrent, *await patient(contender, [contender.generate(later, workload.answer_tokens)])]


async def fill(servers: Sequence[MeteredWarpcore], workload: CacheWorkload, loaded: Sequence[int]) -> list[Memory]:
    """The same distinct prompts to every server (RSS after load: `loaded`), each sized to the room left in the
    first server's cache, until its gauge reaches the cap (within a prefill piece); RSS again. A prompt's own
    beginning waits in its slot until another prompt takes the slot (prompt_reuse.py): a one-token prompt after
    each puts it into the cache before the gauge is read."""
    gauges = await servers[0].gauges()
    capacity = int(gauges["warpcore_prompt_cache_capacity_tokens"])
    held, prompts, rules = int(gauges["warpcore_prompt_cache_tokens"]), 0, workload.rules
    kept = 1.0  # the share of the prompt's text sent: less than one rule's prompt fills the last of the room
    while capacity - held > PIECE and prompts < MAX_FILL_PROMPTS:
        text = system_prompt(f"fill-{prompts}", rules) + question(prompts)
        text = text[: max(1, int(len(text) * kept))]
        timings = [await patient(server, [server.generate(text, 1)]) for server in servers]
        for server in servers:
            await patient(server, [server.generate("\n", 1)])
        prompts += 1
        before, held = held, int((await servers[0].gauges())["warpcore_prompt_cache_tokens"])
        # As many rules as the room left needs (less half a piece, and at least a piece: a shorter prompt keeps
        # nothing), in this prompt's tokens per rule, within the context; fewer when a prompt overshot and pushed
        # an earlier one out.
        per_rule = (timings[0][0].prompt_tokens or rules) / (rules * kept)
        wanted = max(capacity - held - PIECE // 2, PIECE) / per_rule if held >= before else rules * kept / 2
        rules = max(1, min(int(wanted), int((workload.model.context - 64) / per_rule)))
        kept = min(1.0, wanted)
    memory = []
    for server, rss_loaded in zip(servers, loaded, strict=True):
        gauges = await server.gauges()
        memory.append(
            Memory(
                server.name,
                int(gauges.get("warpcore_prompt_cache_capacity_tokens", 0)),
                int(gauges.get("warpcore_prompt_cache_tokens", 0)),
                prompts,
                rss_loaded,
                rss_bytes(server.pids()),
            )
        )
    return memory


async def measure(workload: CacheWorkload, logs: Path) -> Measured:
    """Each workload with its own contenders, which run one after another within a round in a rotating order."""
    model = workload.model
    measured = Measured()
    cached, uncached = (
        MeteredWarpcore(model, 1, "warpcore cache", None),
        MeteredWarpcore(model, 1, "warpcore no cache", 0),
    )
    # llama_cpp.server with its RAM cache is left out: on Gemma it cut its stream mid-answer on a later turn
    # ("Not enough data to satisfy transfer length header") in the full run.
    chat: list[Contender] = [cached, uncached, xllamacpp_server(model, 1)]
    measured.chat_names = [contender.name for contender in chat]
    try:
        await started(chat, logs)
        loaded = [rss_bytes(server.pids()) for server in (cached, uncached)]
        for round_index in range(workload.rounds):
            for offset in range(len(chat)):
                contender = chat[(round_index + offset) % len(chat)]
                turns = await conversation(contender, workload, f"chat-{round_index}")
                measured.chat[contender.name, round_index] = turns
            print(f"multi-turn chat, round {round_index + 1}/{workload.rounds} done", flush=True)
        paced = [cached, chat[2]]
        for round_index in range(workload.paced_rounds):
            for offset in range(len(paced)):
                contender = paced[(round_index + offset) % len(paced)]
                turns = await conversation(contender, workload, f"paced-{round_index}", workload.pause)
                measured.paced[contender.name, round_index] = turns
        print("multi-turn chat at a person's pace done", flush=True)
        measured.memory = await fill([cached, uncached], workload, loaded)
        print("memory done", flush=True)
    finally:
        await asyncio.gather(*(contender.stop() for contender in chat), return_exceptions=True)
    shared: list[Contender] = [
        MeteredWarpcore(model, workload.callers, f"warpcore parallel={workload.callers} cache", None),
        MeteredWarpcore(model, workload.callers, f"warpcore parallel={workload.callers} no cache", 0),
        xllamacpp_server(model, workload.callers),
    ]
    measured.shared_names = [contender.name for contender in shared]
    try:
        await started(shared, logs)
        for round_index in range(workload.rounds):
            for offset in range(len(shared)):
                contender = shared[(round_index + offset) % len(shared)]
                streams = await callers(contender, workload, f"shared-{round_index}")
                measured.shared[contender.name, round_index] = streams
            print(f"shared system prompt, round {round_index + 1}/{workload.rounds} done", flush=True)
    finally:
        await asyncio.gather(*(contender.stop() for contender in shared), return_exceptions=True)
    return measured


def smoke_workload(models: Path) -> CacheWorkload:
    from tests.tiny_model import CONTEXT, write_tiny_model

    path = write_tiny_model(models / "tiny.gguf")
    model = Workload(path, models, path.name, CONTEXT, 4, levels=(1, 4), rounds=1, single_stream_rounds=1, slots=4)
    return CacheWorkload(model, rules=4, turns=3, answer_tokens=12, rounds=1, pause=0.2, paced_rounds=1)


def gemma_workload(arguments: argparse.Namespace) -> CacheWorkload:
    from warpcore.server.embedded import install_embedded_model

    models = Path(arguments.models_path)
    name = install_embedded_model(models)
    callers = arguments.callers
    model = Workload(
        models / name, models, name, arguments.context, arguments.answer_tokens, (1, callers), 1, 1, callers
    )
    return CacheWorkload(model, arguments.rules, arguments.turns, arguments.answer_tokens, arguments.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for prompt_cache.json and its charts")
    parser.add_argument("--smoke", action="store_true", help="the tiny test model, short prompts, one round")
    default_models = os.environ.get("MODELS_PATH", str(Path.home() / ".cache" / "warpcore" / "models"))
    parser.add_argument("--models-path", default=default_models)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--answer-tokens", type=int, default=32, help="tokens generated per turn")
    parser.add_argument("--rules", type=int, default=47, help="system prompt length in rules (~32 tokens each)")
    parser.add_argument("--callers", type=int, default=4, choices=range(1, 5), help="callers sharing a prompt")
    parser.add_argument("--context", type=int, default=4096, help="tokens of context per sequence")
    arguments = parser.parse_args()
    if arguments.turns < 2:
        parser.error("--turns must be at least 2: turn 1 fills the caches, the figures are turns 2 and later")
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-") as scratch:
        workload = smoke_workload(Path(scratch)) if arguments.smoke else gemma_workload(arguments)
        measured = asyncio.run(measure(workload, Path(scratch)))
    result = report(workload, measured, arguments.out)
    print(f"wrote {result.write(arguments.out, NAME)}")


if __name__ == "__main__":
    main()
