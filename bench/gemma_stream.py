"""Tokens/s of one Gemma 3 270M stream through warpcore against llama-cpp-python directly, same run, same prompt."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from llama_cpp import Llama

from warpcore.server.adapters.factory import create_adapter
from warpcore.server.app import start_server
from warpcore.server.domain import LocalSettings
from warpcore.server.embedded import embedded_load_spec
from warpcore.server.registry import ModelRegistry
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def direct(model_path: Path, max_tokens: int, threads: int) -> tuple[int, float]:
    llama = Llama(model_path=str(model_path), n_ctx=4096, n_threads=threads, verbose=False)
    try:
        started = time.perf_counter()
        chunks = llama.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0, stream=True)
        tokens = sum(1 for _ in chunks)
        return tokens, time.perf_counter() - started
    finally:
        llama.close()


async def through_server(stub: Stub, model_id: str, max_tokens: int) -> tuple[int, float]:
    request = pb.GenerateRequest(
        model_id=model_id, prompt=PROMPT, options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0.0)
    )
    started = time.perf_counter()
    tokens = 0
    async for frame in stub.Generate(request):
        if frame.HasField("result"):
            tokens = frame.result.usage.completion_tokens
    return tokens, time.perf_counter() - started


async def main(rounds: int, max_tokens: int, threads: int) -> None:
    with tempfile.TemporaryDirectory() as models:
        spec = embedded_load_spec(Path(models))
        spec = dataclasses.replace(spec, settings=LocalSettings(threads=threads, chat_format="gemma"))
        model_path = Path(models) / spec.name
        registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": models}))
        server = await start_server(registry, "127.0.0.1:0")
        await registry.load(spec)
        direct_rates, server_rates = [], []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            for _ in range(rounds):  # interleaved, so drift on a noisy machine hits both alike
                tokens, seconds = await asyncio.to_thread(direct, model_path, max_tokens, threads)
                direct_rates.append(tokens / seconds)
                tokens, seconds = await through_server(stub, spec.model_id, max_tokens)
                server_rates.append(tokens / seconds)
        await server.stop(None)
        await registry.close()
    direct_median, server_median = statistics.median(direct_rates), statistics.median(server_rates)
    print(f"{rounds} interleaved rounds of {max_tokens} greedy tokens on {threads} threads; median tokens/s:")
    print(f"llama-cpp-python direct : {direct_median:6.1f}")
    print(f"warpcore gRPC stream    : {server_median:6.1f}")
    print(f"ratio warpcore / direct : {server_median / direct_median:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.max_tokens, arguments.threads))
