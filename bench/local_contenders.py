"""The local-model bench's contenders: llama-cpp-python in this process, warpcore-server (parallel 1 and N),
llama_cpp.server and xllamacpp, each streaming one completion and timing it; and what a stream and a round measured."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from bench.harness import ContenderProcess, free_port, python_module, wait_grpc_serving, wait_http_ready
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

THREADS = 2
WARPCORE_MODEL_ID = "bench"


@dataclass(frozen=True)
class Workload:
    model_path: Path
    """The GGUF file, for the contenders that take a path."""
    models_path: Path
    warpcore_model: str
    """The same file as warpcore names it: relative to models_path."""
    context: int
    """Tokens of context per sequence, for every contender."""
    max_tokens: int
    levels: tuple[int, ...]
    rounds: int
    single_stream_rounds: int
    slots: int
    """Sequences decoded together by the batching contenders (warpcore parallel=N, xllamacpp n_parallel)."""


@dataclass(frozen=True)
class StreamTiming:
    tokens: int
    first_token: float
    """Seconds from sending the request to its first text."""
    seconds: float
    """Seconds from sending the request to its end, waiting for a turn included."""
    text: str = ""
    """What the stream said, for the benches that carry it forward."""
    cached_tokens: int | None = None
    """Prompt tokens the server says it took from its prompt cache, where it says."""
    prompt_tokens: int | None = None
    """Prompt tokens as the server counted them, where it says."""

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class Trial:
    streams: list[StreamTiming]
    wall: float

    @property
    def aggregate(self) -> float:
        return sum(stream.tokens for stream in self.streams) / self.wall


class Contender(ABC):
    name: str

    @abstractmethod
    async def start(self, logs: Path) -> None: ...

    @abstractmethod
    async def generate(self, text: str, max_tokens: int) -> StreamTiming: ...

    @abstractmethod
    async def stop(self) -> None: ...


class DirectLlama(Contender):
    """llama-cpp-python in the benchmark's own process: one model, one generation at a time (it is not thread-safe,
    so concurrent callers take turns), the limit for one stream."""

    name = "llama-cpp-python direct"

    def __init__(self, workload: Workload) -> None:
        self._workload = workload
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max(workload.levels), thread_name_prefix="direct")
        self._llama: Any = None

    async def start(self, logs: Path) -> None:
        from llama_cpp import Llama  # the other contenders never load llama.cpp into this process

        self._llama = await asyncio.to_thread(
            Llama,
            model_path=str(self._workload.model_path),
            n_ctx=self._workload.context,
            n_threads=THREADS,
            n_threads_batch=THREADS,
            verbose=False,
        )

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._generate, text, max_tokens, started)

    def _generate(self, text: str, max_tokens: int, started: float) -> StreamTiming:
        tokens, first = 0, 0.0
        with self._lock:
            for chunk in self._llama.create_completion(text, max_tokens=max_tokens, temperature=0.0, stream=True):
                if chunk["choices"][0]["text"]:
                    tokens += 1
                    first = first or time.perf_counter() - started
        return StreamTiming(tokens, first, time.perf_counter() - started)

    async def stop(self) -> None:
        self._threads.shutdown()
        if self._llama is not None:
            self._llama.close()


class WarpcoreServer(Contender):
    """`warpcore-server` in its own process, preloading the model from a config file; streams over gRPC."""

    def __init__(
        self,
        workload: Workload,
        parallel: int,
        *,
        name: str | None = None,
        local: Mapping[str, int] | None = None,
        arguments: Sequence[str] = (),
    ) -> None:
        """`local`: more `[models.local]` settings; `arguments`: more command-line arguments."""
        self.name = name or f"warpcore parallel={parallel}"
        self._workload = workload
        self._parallel = parallel
        self._local = dict(local or {})
        self._arguments = tuple(arguments)
        self._process: ContenderProcess | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: inference_pb2_grpc.InferenceServiceAsyncStub | None = None

    async def start(self, logs: Path) -> None:
        workload = self._workload
        config = logs / f"{self.name.replace(' ', '_').replace('=', '-')}.toml"
        local = {"threads": THREADS, "parallel": self._parallel, **self._local}
        config.write_text(
            "[[models]]\n"
            f'id = "{WARPCORE_MODEL_ID}"\nbackend = "llama_cpp"\nmodel = "{workload.warpcore_model}"\n'
            f"context_size = {workload.context}\n\n"
            "[models.local]\n" + "".join(f"{key} = {value}\n" for key, value in local.items())
        )
        port = free_port()
        arguments = ("--host", "127.0.0.1", "--port", str(port), "--no-default-model", "--config", str(config))
        # Every stream is admitted at once, so that queueing is the model's own (parallel slots), not the limiter's.
        limits = ("--max-streams-per-model", str(max(workload.levels)), "--models-path", str(workload.models_path))
        self._process = await ContenderProcess.start(
            self.name, python_module("warpcore.server", *arguments, *limits, *self._arguments), logs
        )
        await wait_grpc_serving(f"127.0.0.1:{port}", self._process)
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        assert self._stub is not None
        request = pb.GenerateRequest(
            model_id=WARPCORE_MODEL_ID,
            prompt=text,
            options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0.0),
        )
        started = time.perf_counter()
        first, pieces, usage = 0.0, [], pb.Usage()
        async for frame in self._stub.Generate(request):
            if frame.HasField("delta") and frame.delta.text:
                first = first or time.perf_counter() - started
                pieces.append(frame.delta.text)
            elif frame.HasField("result"):
                usage = frame.result.usage
        return StreamTiming(
            usage.completion_tokens,
            first,
            time.perf_counter() - started,
            "".join(pieces),
            usage.cached_prompt_tokens,
            usage.prompt_tokens,
        )

    def pids(self) -> list[int]:
        """The server's process and its children, for `rss_bytes`."""
        assert self._process is not None
        return self._process.pids()

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._process is not None:
            await self._process.stop()


class OpenAICompletionsServer(Contender):
    """A server with an OpenAI-compatible /v1/completions endpoint, in its own process; streams over SSE."""

    def __init__(self, name: str, argv: list[str], port: int, body: Mapping[str, object] | None = None) -> None:
        """`body`: more fields of every request."""
        self.name = name
        self._argv = argv
        self._body = dict(body or {})
        self._base = f"http://127.0.0.1:{port}"
        self._process: ContenderProcess | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, logs: Path) -> None:
        self._process = await ContenderProcess.start(self.name, self._argv, logs)
        await wait_http_ready(f"{self._base}/v1/models", self._process)
        # A connection per request: xllamacpp's HTTP server may close a kept-alive connection as the client sends
        # the next request on it, which then fails with "Server disconnected".
        connector = aiohttp.TCPConnector(force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))

    async def generate(self, text: str, max_tokens: int) -> StreamTiming:
        assert self._session is not None
        body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0.0, "stream": True, **self._body}
        started = time.perf_counter()
        tokens, first, pieces = 0, 0.0, []
        usage: dict[str, Any] = {}
        try:
            async with self._session.post(f"{self._base}/v1/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.content:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    chunk = json.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["text"]:
                        tokens += 1
                        first = first or time.perf_counter() - started
                        pieces.append(chunk["choices"][0]["text"])
                    usage = chunk.get("usage") or usage
        except aiohttp.ClientError as error:  # a server that died: say which, and what it said last
            assert self._process is not None
            raise self._process.failure(f"request failed ({error!r})") from error
        # Each chunk is one token, unless text had to wait for the rest of a UTF-8 character; a usage count wins.
        return StreamTiming(
            usage.get("completion_tokens") or tokens,
            first,
            time.perf_counter() - started,
            "".join(pieces),
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            usage.get("prompt_tokens"),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            await self._process.stop()


def llama_cpp_server(workload: Workload) -> OpenAICompletionsServer:
    port = free_port()
    arguments = (
        *("--model", str(workload.model_path), "--host", "127.0.0.1", "--port", str(port)),
        *("--n_threads", str(THREADS), "--n_threads_batch", str(THREADS), "--n_ctx", str(workload.context)),
        # Off, so that a second request waits for the first instead of cutting it short.
        *("--interrupt_requests", "False", "--verbose", "False"),
    )
    return OpenAICompletionsServer("llama_cpp.server", python_module("llama_cpp.server", *arguments), port)


def xllamacpp_server(workload: Workload, slots: int | None = None) -> OpenAICompletionsServer:
    """llama.cpp's server with `slots` slots (default: the workload's), each keeping its last prompt's cells."""
    slots = slots or workload.slots
    port = free_port()
    arguments = (
        *("--model", str(workload.model_path), "--port", str(port), "--threads", str(THREADS)),
        *("--parallel", str(slots), "--context", str(workload.context)),
    )
    name = f"xllamacpp n_parallel={slots}"
    # cache_prompt is the server's default; said here so that a change of default cannot silently turn it off.
    body = {"cache_prompt": True}
    return OpenAICompletionsServer(name, python_module("bench.xllamacpp_server", *arguments), port, body)


def contenders(workload: Workload) -> list[Contender]:
    return [
        DirectLlama(workload),
        WarpcoreServer(workload, 1),
        WarpcoreServer(workload, workload.slots),
        llama_cpp_server(workload),
        xllamacpp_server(workload),
    ]
