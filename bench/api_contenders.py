"""The API bench's contenders: the vendor SDKs (straight to the upstream, or through LiteLLM), warpcore's Python SDK,
and a bare grpc.aio floor; each streams one request and records when its text arrives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import grpc
import httpx2
import openai

from bench.api_upstream import ANTHROPIC_PREFIX, FAST_MODEL, OPENAI_PREFIX, SLOW_MODEL, expected_text
from bench.harness import ContenderProcess
from warpcore.client import ApiConfig, AsyncClient, GenerateResult, TextDelta
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

DIRECT, WARPCORE, LITELLM = "SDK direct", "warpcore", "LiteLLM"
FLOOR = "bare grpc.aio"
CONTENDERS = (DIRECT, WARPCORE, LITELLM)
PROMPT = "Tell me a long story."
API_KEY = "sk-bench-upstream"
_POOL = httpx2.Limits(max_connections=4096, max_keepalive_connections=4096)  # above the largest workload


@dataclass
class StreamRecord:
    started: float
    arrivals: list[float] = field(default_factory=list)
    """When each piece of text arrived (a gateway that coalesces sends fewer, larger pieces)."""
    error: str | None = None
    server_ttft: float | None = None
    """warpcore's own time from taking the request to handing out its first text, from the result's timings."""


async def _read_texts(
    record: StreamRecord, texts: AsyncIterator[str], expected: str, closing: Callable[[], Awaitable[None]]
) -> StreamRecord:
    parts: list[str] = []
    try:
        async for text in texts:
            if text:
                record.arrivals.append(time.perf_counter())
                parts.append(text)
    finally:
        await closing()
    if "".join(parts) != expected:
        record.error = f"text differs: {len(''.join(parts))} characters instead of {len(expected)}"
    return record


class Contender:
    name: str
    gateway: ContenderProcess | None = None
    """The process whose CPU time and memory count as the contender's own."""

    async def stream(self, protocol: str, model: str, tokens: int) -> StreamRecord:
        record = StreamRecord(time.perf_counter())
        try:
            return await self._stream(record, protocol, model, tokens)
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported, none stops the run
            record.error = f"{type(error).__name__}: {error}"[:300]
            return record

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class VendorSdk(Contender):
    """The vendors' own SDKs, against the upstream itself or against a gateway that speaks its protocols."""

    def __init__(self, name: str, openai_base: str, anthropic_base: str, api_key: str, *, prefixed: bool) -> None:
        self.name = name
        self._openai = openai.AsyncOpenAI(
            base_url=openai_base,
            api_key=api_key,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=_POOL),
        )
        self._anthropic = anthropic.AsyncAnthropic(
            base_url=anthropic_base,
            api_key=api_key,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(limits=_POOL),
        )
        self._prefixed = prefixed
        """Whether model names carry the protocol, as in the gateway's configuration."""

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        name = f"{protocol}-{model}" if self._prefixed else model
        messages: Any = [{"role": "user", "content": PROMPT}]
        if protocol == "openai":
            chunks = await self._openai.chat.completions.create(
                model=name, messages=messages, max_tokens=tokens, stream=True
            )

            async def openai_texts() -> AsyncIterator[str]:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        yield choice.delta.content or ""

            return await _read_texts(record, openai_texts(), expected_text(tokens), chunks.close)
        events = await self._anthropic.messages.create(model=name, messages=messages, max_tokens=tokens, stream=True)

        async def anthropic_texts() -> AsyncIterator[str]:
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text

        return await _read_texts(record, anthropic_texts(), expected_text(tokens), events.close)

    async def close(self) -> None:
        await self._openai.close()
        await self._anthropic.close()


class Warpcore(Contender):
    """warpcore's Python SDK against a warpcore-server process with the upstream's models loaded."""

    name = WARPCORE

    def __init__(self, gateway: ContenderProcess, target: str) -> None:
        self.gateway = gateway
        self._client = AsyncClient(target, timeout=600)

    async def load(self, upstream: str) -> None:
        for protocol, base_url in (
            ("openai", f"{upstream}{OPENAI_PREFIX}/v1"),
            ("anthropic", upstream + ANTHROPIC_PREFIX),
        ):
            for model in (FAST_MODEL, SLOW_MODEL):
                config = ApiConfig(api_key=API_KEY, base_url=base_url)
                await self._client.load_model(model, backend=protocol, model_id=f"{protocol}-{model}", config=config)

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        stream = await self._client.generate(f"{protocol}-{model}", prompt=PROMPT, max_tokens=tokens, stream=True)

        async def texts() -> AsyncIterator[str]:
            async for event in stream:
                if isinstance(event, GenerateResult):
                    record.server_ttft = event.timings.time_to_first_token
                elif isinstance(event, TextDelta):
                    yield event.text

        async def closing() -> None:
            stream.close()

        return await _read_texts(record, texts(), expected_text(tokens), closing)

    async def close(self) -> None:
        await self._client.close()


class BareGrpc(Contender):
    """The generated stub against `bench.grpc_floor`, which answers without an upstream: gRPC's own cost."""

    name = FLOOR

    def __init__(self, server: ContenderProcess, target: str) -> None:
        self.gateway = server
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    async def _stream(self, record: StreamRecord, protocol: str, model: str, tokens: int) -> StreamRecord:
        options = pb.GenerationOptions(max_tokens=tokens)
        call = self._stub.Generate(pb.GenerateRequest(model_id=model, prompt=PROMPT, options=options))

        async def texts() -> AsyncIterator[str]:
            async for response in call:
                yield response.delta.text

        async def closing() -> None:
            call.cancel()

        return await _read_texts(record, texts(), expected_text(tokens), closing)

    async def close(self) -> None:
        await self._channel.close()
