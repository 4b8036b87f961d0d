"""The local-model bench's report: per-level medians of every contender, paired ratios, targets and charts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.charts import line_chart
from bench.harness import BenchResult, Cell, Table, Target, median
from bench.local_contenders import THREADS, Trial, Workload

NAME = "local_model"


@dataclass(frozen=True)
class Summary:
    tokens_per_stream: float
    aggregate: float
    slowest: float
    fastest: float
    fairness: float
    first_token: float


def summarize(trials: list[Trial]) -> Summary:
    rates = [[stream.rate for stream in trial.streams] for trial in trials]
    return Summary(
        tokens_per_stream=median(stream.tokens for trial in trials for stream in trial.streams),
        aggregate=median(trial.aggregate for trial in trials),
        slowest=median(min(each) for each in rates),
        fastest=median(max(each) for each in rates),
        fairness=median(min(each) / max(each) for each in rates),
        first_token=median(stream.first_token for trial in trials for stream in trial.streams),
    )


def paired_ratio(trials: dict[tuple[str, int], list[Trial]], numerator: str, denominator: str, level: int) -> float:
    """Median over rounds of the ratio of aggregate tokens/s, each pair measured back to back."""
    pairs = zip(trials[numerator, level], trials[denominator, level], strict=True)
    return median(ours.aggregate / theirs.aggregate for ours, theirs in pairs)


def report(workload: Workload, names: list[str], trials: dict[tuple[str, int], list[Trial]], out: Path) -> BenchResult:
    direct, serial, batched, _, xllamacpp = names
    summaries = {key: summarize(value) for key, value in trials.items()}
    rows: list[list[Cell]] = []
    for level in workload.levels:
        for name in names:
            summary = summaries[name, level]
            rows.append(
                [
                    level,
                    name,
                    round(summary.tokens_per_stream),
                    round(summary.aggregate, 1),
                    round(summary.slowest, 1),
                    round(summary.fastest, 1),
                    round(summary.fairness, 2),
                    round(summary.first_token * 1000),
                ]
            )
    measured = Table(
        caption="Tokens/s per stream (slowest and fastest stream of a round) and in aggregate, time to first token;"
        " medians over rounds",
        columns=[
            "streams",
            "contender",
            "tokens/stream",
            "aggregate tok/s",
            "slowest stream tok/s",
            "fastest stream tok/s",
            "slowest/fastest",
            "TTFT median ms",
        ],
        rows=rows,
    )
    single = paired_ratio(trials, serial, direct, 1)
    ratio_rows: list[list[Cell]] = [
        [f"{serial} / {direct}", 1, round(single, 3)],
        [f"{batched} / {direct}", 1, round(paired_ratio(trials, batched, direct, 1), 3)],
    ]
    targets = [Target(f"1 stream: {serial} / {direct} (tokens/s)", round(single, 3), ">=", 0.98, "x")]
    for level in workload.levels[1:]:
        for name in (serial, batched):
            ratio_rows.append(
                [f"{name} / {xllamacpp} (aggregate)", level, round(paired_ratio(trials, name, xllamacpp, level), 3)]
            )
    if 4 in workload.levels:
        versus_batching = paired_ratio(trials, batched, xllamacpp, 4)
        fairness = summaries[batched, 4].fairness
        targets += [
            Target(
                f"4 streams: {batched} / {xllamacpp} aggregate (continuous-batching issue)",
                round(versus_batching, 3),
                ">=",
                1.0,
                "x",
            ),
            Target(
                f"4 streams: {batched} slowest / fastest stream (continuous-batching issue)",
                round(fairness, 3),
                ">=",
                0.8,
                "x",
            ),
        ]
    ratios = Table(
        caption="Ratios, each the median over rounds of a pair measured back to back",
        columns=["ratio", "streams", "value"],
        rows=ratio_rows,
    )
    levels = list(workload.levels)
    charts = [
        line_chart(
            out / f"{NAME}_aggregate.png",
            "Aggregate tokens/s",
            "concurrent streams",
            "tokens/s",
            levels,
            {name: [summaries[name, level].aggregate for level in levels] for name in names},
        ),
        line_chart(
            out / f"{NAME}_slowest_stream.png",
            "Slowest stream's tokens/s",
            "concurrent streams",
            "tokens/s",
            levels,
            {name: [summaries[name, level].slowest for level in levels] for name in names},
        ),
        line_chart(
            out / f"{NAME}_ttft.png",
            "Time to first token (median)",
            "concurrent streams",
            "ms (log scale)",
            levels,
            {name: [summaries[name, level].first_token * 1000 for level in levels] for name in names},
            log_y=True,  # from a tenth of a second to waiting out seven other streams
        ),
    ]
    description = (
        f"`{workload.model_path.name}`, greedy (temperature 0), raw completion of the same prompts (story openings,"
        f" a distinct one per request so that no prefix cache helps), {workload.max_tokens} tokens per stream,"
        f" {THREADS} threads and {workload.context} tokens of context per sequence for everyone."
        f" Rounds per concurrency level: {workload.rounds} ({workload.single_stream_rounds} for one stream); within"
        " a round the contenders run one after another in an order that rotates, so drift on this shared machine"
        " hits all alike, and ratios are taken pair by pair within a round.\n\n"
        f"- **{direct}**: `Llama.create_completion(stream=True)` in the benchmark's process; one model object,"
        " so concurrent streams take turns (it is not thread-safe).\n"
        f"- **{serial}** / **{batched}**: `warpcore-server` in its own process, model preloaded from a config file"
        " with `LocalBackendConfig.parallel` 1 (one generation at a time) or"
        f" {workload.slots} (that many sequences decoded together: continuous batching); gRPC streaming from a"
        " `grpc.aio` client.\n"
        "- **llama_cpp.server**: llama-cpp-python's OpenAI-compatible server, `interrupt_requests` off so that"
        " requests queue; `/v1/completions` over SSE.\n"
        f"- **{xllamacpp}**: llama.cpp's own server with continuous batching as bundled in the `xllamacpp` wheel"
        f" (its own llama.cpp build), {workload.slots} slots, in its own process; `/v1/completions` over SSE.\n\n"
        "A stream's tokens/s counts its wait for a turn; aggregate is all streams' tokens over the round's wall"
        " time; TTFT is from sending the request to its first text. Tokens are the server's usage count where it"
        " sends one (warpcore, xllamacpp), else text chunks."
    )
    return BenchResult(
        title="Local model: warpcore against llama-cpp-python, llama_cpp.server and xllamacpp",
        description=description,
        tables=[measured, ratios],
        targets=targets,
        charts=[chart.name for chart in charts],
    )
