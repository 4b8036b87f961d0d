"""A loopback fake of the OpenAI API: chat completions (streamed or not), embeddings and the model list."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
import uuid
from typing import ClassVar

from aiohttp import web

from tests.fakes.base import FakeUpstream, JsonObject, RecordedRequest, SseEvent, StreamPlan


def default_error_type(status: int) -> str:
    """The `type` OpenAI's error bodies carry for `status`."""
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def default_error_code(status: int) -> str | None:
    """The `code` OpenAI's error bodies carry for `status` when nothing more specific applies."""
    return {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)


class FakeOpenAI(FakeUpstream):
    """`POST /v1/chat/completions` and `GET /v1/models`; `base_url` ends in /v1 as the SDK expects."""

    request_id_header: ClassVar[str] = "x-request-id"
    default_models: ClassVar[tuple[str, ...]] = ("gpt-4o-mini", "gpt-4o")
    listing_held: asyncio.Event | None = None
    """When a test sets one, the model list (which a hosted model's load asks for) is answered once it is set: a load
    in progress for as long as the test needs."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._chat_completions)
        router.add_get("/v1/models", self._list_models)
        router.add_post("/v1/embeddings", self._embeddings)

    def _presented_api_key(self, request: RecordedRequest) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return key if scheme.lower() == "bearer" else None

    def error_body(self, status: int, message: str, error_type: str | None, code: str | None) -> JsonObject:
        return {
            "error": {
                "message": message,
                "type": error_type or default_error_type(status),
                "param": None,
                "code": code if code is not None else default_error_code(status),
            }
        }

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        _, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        if self.listing_held is not None:
            await self.listing_held.wait()
        created = int(time.time())
        data = [{"id": model, "object": "model", "created": created, "owned_by": "fake"} for model in self.models]
        return self.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """One unit vector per input, made from the text's hash (the same text, the same vector), of `dimensions`
        components (default EMBEDDING_DIMENSIONS); as floats, or base64 of little-endian float32 as the SDK asks by
        default. Each input counts one token per word."""
        recorded, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body = recorded.body or {}
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(body.get("model"), str) or not isinstance(inputs, list) or not inputs:
            message = "The request needs a JSON body with 'model' and a non-empty 'input'."
            return self.json_response(self.error_body(400, message, None, None), status=400)
        dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
        scripted = self.script.embedding_vectors
        data = []
        for index, text in enumerate(inputs):
            if scripted is not None:  # as they are, unencoded: vectors no float32 holds (NaN) too
                data.append({"object": "embedding", "index": index, "embedding": scripted[index]})
                continue
            vector = fake_embedding(str(text), dimensions)
            encoded: object = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(str(text).split()) for text in inputs)
        answer: JsonObject = {"object": "list", "data": data, "model": body["model"]}
        usage = self.script.embedding_usage
        if usage is not None:
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens} if usage == "counted" else usage
        return self.json_response(answer)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        recorded, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body = recorded.body
        if body is None or not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            return self.json_response(
                self.error_body(400, "The request needs a JSON body with 'model' and 'messages'.", None, None),
                status=400,
            )
        script = self.script
        if script.refuse_max_tokens and "max_tokens" in body:
            message = (
                "Unsupported parameter: 'max_tokens' is not supported with this model."
                " Use 'max_completion_tokens' instead."
            )
            error = self.error_body(400, message, None, "unsupported_parameter")
            error["error"]["param"] = "max_tokens"
            return self.json_response(error, status=400)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model: str = body["model"]
        finish_reason = script.finish_reason or "stop"
        usage = {
            "prompt_tokens": script.prompt_tokens,
            "completion_tokens": script.output_tokens,
            "total_tokens": script.prompt_tokens + script.output_tokens,
        }
        usage.update(script.usage_details)
        if body.get("stream") is not True:
            answer: JsonObject = {
                "index": 0,
                "message": {"role": "assistant", "content": script.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            return self.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [answer],
                    "usage": usage,
                }
            )

        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True

        def chunk(choices: list[JsonObject], chunk_usage: JsonObject | None = None) -> SseEvent:
            payload: JsonObject = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if include_usage:  # then every chunk carries `usage`, null but in the last one
                payload["usage"] = chunk_usage
            return SseEvent.of_json(payload)

        top_logprobs = body.get("top_logprobs") or 0

        def choice(delta: JsonObject, reason: str | None = None) -> JsonObject:
            delta = dict(delta)
            logprobs = delta.pop("logprobs", None)  # a scripted event's own, as the API sends them
            if logprobs is None and body.get("logprobs") is True and delta.get("content"):
                logprobs = {"content": [fake_logprob(delta["content"], top_logprobs)], "refusal": None}
            return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}

        tail = [chunk([choice({}, finish_reason)])]
        tail += [chunk([choice({"content": text})]) for text in script.after_stop]
        if include_usage and script.usage_chunk:
            tail.append(chunk([], usage))
        tail.append(SseEvent("[DONE]"))
        plan = StreamPlan(
            head=[chunk([choice({"role": "assistant", "content": ""})])],
            chunks=[chunk([choice({"content": text})]) for text in script.chunks]
            if script.events is None
            else [chunk([choice(delta)]) for delta in script.events],
            tail=tail,
            malformed=SseEvent('{"id": "chatcmpl-broken", "choices": [ this is not JSON'),
        )
        return await self.stream(request, plan)


EMBEDDING_DIMENSIONS = 8


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The unit vector the fake gives `text`: the same for the same text, different for another."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[n % len(digest)] - 127.5 + n for n in range(dimensions)]
    length = math.sqrt(sum(component * component for component in raw))
    return [component / length for component in raw]


def fake_logprob(text: str, top: int) -> JsonObject:
    """The logprobs entry the fake streams with a chunk of `text`, as one token: log-probability -len(text)/10,
    and `top` alternatives, the token itself first, then "alt1", "alt2", ... less likely each."""
    logprob = -len(text) / 10
    alternatives = [{"token": text, "logprob": logprob, "bytes": list(text.encode())}]
    alternatives += [
        {"token": f"alt{n}", "logprob": logprob - n, "bytes": list(f"alt{n}".encode())} for n in range(1, top)
    ]
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": alternatives[:top]}
