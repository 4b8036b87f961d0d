"""The HTTP door's overhead: each vendor SDK straight to a loopback upstream, through warpcore's OpenAI- and
Anthropic-compatible door, and through LiteLLM's same routes, same upstream (bench.api_upstream), same run; in the
latency probe also through a bare aiohttp proxy (bench.http_floor), the floor of any Python HTTP gateway.

Contenders, upstream and workload measurement are the API bench's (bench.api_contenders, bench.api_workloads); only
the door is new: the same SDK code points its base URL at warpcore's --http-port instead of LiteLLM's port.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.api_contenders import API_KEY, DIRECT, LITELLM, Contender, VendorSdk, Warpcore
from bench.api_gateway import LITELLM_KEY, WARPCORE_LIMITS, litellm_config, litellm_version, run_from_command_line
from bench.api_upstream import ANTHROPIC_PREFIX, FAST_MODEL, OPENAI_PREFIX
from bench.api_workloads import Summary, Workload, measure
from bench.harness import ContenderProcess, free_port, python_module, wait_for_line, wait_grpc_serving, wait_http_ready
from bench.http_report import HTTP_FLOOR, NAME, report

DOOR = "warpcore HTTP"
CONTENDERS = (DIRECT, DOOR, LITELLM)
# First the latency probe (time to first token, one stream at a time), then the concurrency.
FULL = (
    Workload("1 stream x 100 tokens", 1, 100, FAST_MODEL, 30, floor=True),
    Workload("64 streams x 200 tokens", 64, 200, FAST_MODEL, 5),
)
SMOKE = (
    Workload("1 stream x 20 tokens", 1, 20, FAST_MODEL, 2, floor=True),
    Workload("8 streams x 20 tokens", 8, 20, FAST_MODEL, 1),
)
WARMUP = Workload("warm-up", 4, 50, FAST_MODEL, 2)
SMOKE_WARMUP = Workload("warm-up", 2, 10, FAST_MODEL, 1)
Results = dict[tuple[str, str, str], Summary]


async def start_contenders(
    work: Path, litellm_venv: Path, processes: list[ContenderProcess]
) -> tuple[list[Contender], Contender]:
    """The upstream, warpcore (gRPC to load the models, HTTP to serve them), LiteLLM and the bare proxy, each a
    process of its own (appended to `processes` as it starts); the vendor SDKs pointed at each, and at the floor."""

    async def start(
        name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> ContenderProcess:
        process = await ContenderProcess.start(name, argv, work, env, cwd)
        processes.append(process)
        return process

    upstream_process = await start("upstream", python_module("bench.api_upstream"))
    upstream = "http://" + (await wait_for_line(upstream_process, "listening on ")).rsplit(" ", 1)[1]
    litellm_origin = f"http://127.0.0.1:{free_port()}"
    (work / "litellm.yaml").write_text(litellm_config(upstream))
    litellm_command = [str(litellm_venv / "bin" / "litellm"), "--config", str(work / "litellm.yaml")]
    litellm_command += ["--host", "127.0.0.1", "--port", litellm_origin.rsplit(":", 1)[1], "--telemetry", "False"]
    litellm_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY}
    litellm_process = await start("litellm", litellm_command, {**os.environ, **litellm_env}, cwd=work)
    grpc_port, http_port = free_port(), free_port()
    server = python_module("warpcore.server", "--host=127.0.0.1", f"--port={grpc_port}", "--no-default-model")
    warpcore_process = await start("warpcore", [*server, f"--http-port={http_port}", "--grace=1", *WARPCORE_LIMITS])
    await wait_grpc_serving(f"127.0.0.1:{grpc_port}", warpcore_process)
    loader = Warpcore(warpcore_process, f"127.0.0.1:{grpc_port}")
    try:
        await loader.load(upstream)  # models "openai-fast", "anthropic-fast", ..., as LiteLLM names them
    finally:
        await loader.close()
    door_origin = f"http://127.0.0.1:{http_port}"
    direct = VendorSdk(DIRECT, f"{upstream}{OPENAI_PREFIX}/v1", upstream + ANTHROPIC_PREFIX, API_KEY, prefixed=False)
    door = VendorSdk(DOOR, f"{door_origin}/v1", door_origin, "unused", prefixed=True)
    door.gateway = warpcore_process
    litellm = VendorSdk(LITELLM, f"{litellm_origin}/v1", litellm_origin, LITELLM_KEY, prefixed=True)
    litellm.gateway = litellm_process
    floor_process = await start("http_floor", python_module("bench.http_floor", upstream))
    floor_origin = "http://" + (await wait_for_line(floor_process, "listening on ")).rsplit(" ", 1)[1]
    floor = VendorSdk(HTTP_FLOOR, f"{floor_origin}/v1", floor_origin, API_KEY, prefixed=False)
    floor.gateway = floor_process
    contenders: list[Contender] = [direct, door, litellm]
    try:
        await wait_http_ready(f"{litellm_origin}/health/liveliness", litellm_process)
    except BaseException:
        for contender in [*contenders, floor]:
            await contender.close()
        raise
    return contenders, floor


async def main(out: Path, smoke: bool, litellm_venv: Path) -> None:
    version = litellm_version(litellm_venv)
    workloads = SMOKE if smoke else FULL
    processes: list[ContenderProcess] = []
    with tempfile.TemporaryDirectory(prefix="warpcore-bench-http-") as work:
        try:
            contenders, floor = await start_contenders(Path(work), litellm_venv, processes)
            try:
                results = await measure(contenders, floor, [], workloads, SMOKE_WARMUP if smoke else WARMUP)
            finally:
                for contender in [*contenders, floor]:
                    await contender.close()
        finally:
            for process in reversed(processes):
                await process.stop()
    result = report(results, workloads, CONTENDERS, version, out)
    print(f"wrote {result.write(out, NAME)}", file=sys.stderr)


if __name__ == "__main__":
    run_from_command_line(__doc__, main)
