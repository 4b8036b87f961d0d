"""API gateway overhead: SDK straight to a loopback upstream, through warpcore, and through LiteLLM, same run.

This module starts the processes and runs the benchmark; the contenders are in `bench.api_contenders`, the
workloads and their measurement in `bench.api_workloads`, the tables, targets and charts in `bench.api_report`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.api_contenders import API_KEY, DIRECT, LITELLM, BareGrpc, Contender, VendorSdk, Warpcore
from bench.api_report import NAME, report
from bench.api_upstream import ANTHROPIC_PREFIX, FAST_MODEL, OPENAI_PREFIX, SLOW_MODEL, raise_open_file_limit
from bench.api_workloads import FULL, SMOKE, SMOKE_WARMUP, UPSTREAM, WARMUP, measure
from bench.harness import ContenderProcess, free_port, python_module, wait_for_line, wait_grpc_serving, wait_http_ready

ROOT = Path(__file__).resolve().parent.parent
LITELLM_KEY = "sk-bench-litellm"
# Hosted-API models' limits, raised above the largest workload (1,000 streams at once).
WARPCORE_LIMITS = ("--max-streams-per-api-model=2000", "--max-queue-per-api-model=2000")


def litellm_config(upstream: str) -> str:
    """One LiteLLM model per protocol and upstream model; the Anthropic ones on its native Anthropic route."""
    lines = ["model_list:"]
    for protocol, provider_base in (
        ("openai", f"{upstream}{OPENAI_PREFIX}/v1"),
        ("anthropic", upstream + ANTHROPIC_PREFIX),
    ):
        for model in (FAST_MODEL, SLOW_MODEL):
            lines += [
                f"  - model_name: {protocol}-{model}",
                "    litellm_params:",
                f"      model: {protocol}/{model}",
                f'      api_base: "{provider_base}"',
                f"      api_key: {API_KEY}",
            ]
    return "\n".join(lines) + "\n"


async def start_contenders(
    work: Path, litellm_venv: Path, processes: list[ContenderProcess]
) -> tuple[list[Contender], Contender]:
    """Start the upstream, warpcore, LiteLLM and the bare gRPC floor, each in its own process (appended to
    `processes` as they start): the contenders, and the floor."""

    async def start(
        name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> ContenderProcess:
        process = await ContenderProcess.start(name, argv, work, env, cwd)
        processes.append(process)
        return process

    upstream_process = await start(UPSTREAM, python_module("bench.api_upstream"))
    upstream = "http://" + (await wait_for_line(upstream_process, "listening on ")).rsplit(" ", 1)[1]
    # LiteLLM takes longest to start: it gets going first, and warpcore starts meanwhile.
    litellm_port = free_port()
    litellm_origin = f"http://127.0.0.1:{litellm_port}"
    (work / "litellm.yaml").write_text(litellm_config(upstream))
    litellm_command = [str(litellm_venv / "bin" / "litellm"), "--config", str(work / "litellm.yaml")]
    litellm_command += ["--host", "127.0.0.1", "--port", str(litellm_port), "--telemetry", "False"]
    litellm_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY}
    litellm_process = await start("litellm", litellm_command, {**os.environ, **litellm_env}, cwd=work)
    warpcore_port = free_port()
    server = python_module("warpcore.server", "--host=127.0.0.1", f"--port={warpcore_port}", "--no-default-model")
    warpcore_process = await start("warpcore", [*server, "--grace=1", *WARPCORE_LIMITS])
    await wait_grpc_serving(f"127.0.0.1:{warpcore_port}", warpcore_process)
    floor_process = await start("grpc_floor", python_module("bench.grpc_floor"))
    floor = BareGrpc(floor_process, (await wait_for_line(floor_process, "serving on ")).rsplit(" ", 1)[1])
    direct = VendorSdk(DIRECT, f"{upstream}{OPENAI_PREFIX}/v1", upstream + ANTHROPIC_PREFIX, API_KEY, prefixed=False)
    warpcore = Warpcore(warpcore_process, f"127.0.0.1:{warpcore_port}")
    litellm = VendorSdk(LITELLM, f"{litellm_origin}/v1", litellm_origin, LITELLM_KEY, prefixed=True)
    litellm.gateway = litellm_process
    contenders: list[Contender] = [direct, warpcore, litellm]
    try:
        await warpcore.load(upstream)
        await wait_http_ready(f"{litellm_origin}/health/liveliness", litellm_process)
    except BaseException:
        for contender in [*contenders, floor]:
            await contender.close()
        raise
    return contenders, floor


def litellm_version(litellm_venv: Path) -> str:
    """The LiteLLM installed in its venv; exits with how to make the venv when there is none."""
    python = litellm_venv / "bin" / "python"
    if not (litellm_venv / "bin" / "litellm").exists():
        sys.exit(
            f"{litellm_venv}/bin/litellm is missing: LiteLLM runs from its own venv. Make it with `make .venv-litellm`"
            f" or `python3 -m venv {litellm_venv} && {litellm_venv}/bin/pip install -r bench/litellm-requirements.txt`"
        )
    query = "from importlib.metadata import version; print(version('litellm'))"
    return subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True).stdout.strip()


async def main(out: Path, smoke: bool, litellm_venv: Path) -> None:
    version = litellm_version(litellm_venv)
    workloads = SMOKE if smoke else FULL
    processes: list[ContenderProcess] = []
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-api-") as work:
        try:
            contenders, floor = await start_contenders(Path(work), litellm_venv, processes)
            try:
                results = await measure(contenders, floor, processes, workloads, SMOKE_WARMUP if smoke else WARMUP)
            finally:
                for contender in [*contenders, floor]:
                    await contender.close()
        finally:
            for process in reversed(processes):
                await process.stop()
    result = report(results, workloads, version, out)
    print(f"wrote {result.write(out, NAME)}", file=sys.stderr)


def run_from_command_line(
    description: str | None, bench: Callable[[Path, bool, Path], Coroutine[Any, Any, None]]
) -> None:
    """The command line of the benches against LiteLLM: --out, --smoke, --litellm-venv."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="folder for the result file and the charts")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, seconds: checks that every part runs")
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / ".venv-litellm", help="the venv holding LiteLLM")
    arguments = parser.parse_args()
    raise_open_file_limit()
    arguments.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(arguments.out, arguments.smoke, arguments.litellm_venv))


if __name__ == "__main__":
    run_from_command_line(__doc__, main)
