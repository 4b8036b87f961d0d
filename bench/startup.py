"""Start-up: `warpcore-server` process start to health SERVING, without a model and with the default one preloaded."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.charts import bar_chart
from bench.harness import BenchResult, Cell, ContenderProcess, Table, Target, free_port, median, wait_grpc_serving

NAME = "startup"
TARGET_SECONDS = 1.5
SERVER = str(Path(sys.executable).with_name("warpcore-server"))
SERVER_MODULE = "warpcore.server.cli"
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| *(\S+)")


async def to_serving(name: str, extra: tuple[str, ...], models: Path, logs: Path) -> float:
    """Seconds from spawning the server to its overall health reporting SERVING."""
    port = free_port()
    env = {**os.environ, "MODELS_PATH": str(models)}
    started = time.perf_counter()
    server = await ContenderProcess.start(name, [SERVER, "--host", "127.0.0.1", "--port", str(port), *extra], logs, env)
    try:
        await wait_grpc_serving(f"127.0.0.1:{port}", server)
        return time.perf_counter() - started
    finally:
        await server.stop()


def to_exit(*code: str) -> float:
    """Seconds for `python -c <code>` from spawn to exit: the floor under any Python server's start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", *code], check=True)
    return time.perf_counter() - started


def import_profile(limit: int = 8) -> list[list[Cell]]:
    """The packages that cost the most to import along with the server (`python -X importtime`, one run)."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {SERVER_MODULE}"],
        capture_output=True,
        text=True,
        check=True,
    )
    imports = [(int(match[2]), match[3]) for match in map(IMPORT_LINE.match, completed.stderr.splitlines()) if match]
    total = next(micros for micros, name in imports if name == SERVER_MODULE)
    # A name without a dot is a package's first import, wherever it sits in the tree.
    top = sorted((micros, name) for micros, name in imports if "." not in name)[::-1][:limit]
    return [[name, round(micros / 1e6, 3), round(micros / total, 2)] for micros, name in top]


async def measure(repetitions: int, models: Path, logs: Path) -> dict[str, list[float]]:
    from warpcore.server.embedded import install_embedded_model

    install_embedded_model(models)  # assembled once up front, as on any start after the first
    cases: dict[str, list[float]] = {
        "python -c pass": [],
        f"python -c 'import {SERVER_MODULE}'": [],
        "warpcore-server, no model": [],
        "warpcore-server, default model": [],
    }
    for _ in range(repetitions):  # interleaved, so drift hits every case alike
        cases["python -c pass"].append(await asyncio.to_thread(to_exit, "pass"))
        cases[f"python -c 'import {SERVER_MODULE}'"].append(await asyncio.to_thread(to_exit, f"import {SERVER_MODULE}"))
        cases["warpcore-server, no model"].append(await to_serving("no-model", ("--no-default-model",), models, logs))
        cases["warpcore-server, default model"].append(await to_serving("default-model", (), models, logs))
    return cases


def report(cases: dict[str, list[float]], profile: list[list[Cell]], out: Path) -> BenchResult:
    medians = {name: median(times) for name, times in cases.items()}
    no_model = medians["warpcore-server, no model"]
    times = Table(
        caption="Seconds from spawning the process to health SERVING (servers) or to exit (python -c)",
        columns=["case", "median s", "min s", "max s", "runs"],
        rows=[
            [name, round(medians[name], 3), round(min(runs), 3), round(max(runs), 3), len(runs)]
            for name, runs in cases.items()
        ],
    )
    imports = Table(
        caption=f"What importing {SERVER_MODULE} costs, by package (python -X importtime, one run; a package"
        " imported by another counts in both)",
        columns=["package", "cumulative s", "share of the import"],
        rows=profile,
    )
    chart = bar_chart(
        out / f"{NAME}_times.png",
        "Process start to SERVING (median)",
        "seconds",
        {name.replace(", ", "\n"): value for name, value in medians.items()},
        threshold=TARGET_SECONDS,
    )
    description = (
        "`warpcore-server` spawned on a free loopback port; the clock runs from spawn to the first `SERVING` on a"
        " `grpc.health.v1` Watch of the overall service (opened right after spawn, reconnecting every few ms)."
        " The default model is the embedded Gemma 3 270M, already assembled under `MODELS_PATH`, so its time is"
        " loading it. `python -c pass` is the interpreter's own floor; the import line is what loading the"
        " server's code costs before it does anything. The dashed line is the target without a model."
    )
    return BenchResult(
        title="Start-up: process start to SERVING",
        description=description,
        tables=[times, imports],
        targets=[Target("process start to SERVING, no model", round(no_model, 3), "<", TARGET_SECONDS, "s")],
        charts=[chart.name],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for startup.json and its chart")
    parser.add_argument("--smoke", action="store_true", help="one repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    default_models = os.environ.get("MODELS_PATH", str(Path.home() / ".cache" / "warpcore" / "models"))
    parser.add_argument("--models-path", type=Path, default=Path(default_models))
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpcore-startup-") as logs:
        cases = asyncio.run(measure(1 if arguments.smoke else arguments.repetitions, arguments.models_path, Path(logs)))
    result = report(cases, import_profile(), arguments.out)
    print(f"wrote {result.write(arguments.out, NAME)}")


if __name__ == "__main__":
    main()
