"""Jobs for a spawned worker process (a ProcessPoolExecutor's), apart from the test modules: a worker imports the
module of its job first, and theirs bring in the server and llama.cpp, seconds of imports for nothing."""

from __future__ import annotations

from warpcore.client import Client


def generate_in_a_worker(target: str, model_id: str) -> str:
    with Client(target) as client:
        return client.generate(model_id, prompt="x").text
