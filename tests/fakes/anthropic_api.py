"""A loopback fake of the Anthropic API: messages (streamed or not), token counting and the model list."""

from __future__ import annotations

import uuid
from typing import ClassVar

from aiohttp import web

from tests.fakes.base import FakeUpstream, JsonObject, RecordedRequest, SseEvent, StreamPlan

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_REQUIRED_FIELDS: dict[str, type] = {"model": str, "messages": list, "max_tokens": int}


def default_error_type(status: int) -> str:
    """The `error.type` Anthropic's error bodies carry for `status`."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def display_name(model: str) -> str:
    """A readable name for a model id, e.g. "claude-sonnet-4-5" -> "Claude Sonnet 4.5"."""
    words: list[str] = []
    for part in model.split("-"):
        if part.isdigit() and words and words[-1].replace(".", "").isdigit():
            words[-1] += f".{part}"
        else:
            words.append(part.capitalize())
    return " ".join(words)


class FakeAnthropic(FakeUpstream):
    """`POST /v1/messages` and `GET /v1/models`; `base_url` is the origin, as the SDK adds /v1 itself."""

    request_id_header: ClassVar[str] = "request-id"
    default_models: ClassVar[tuple[str, ...]] = ("claude-sonnet-4-5", "claude-haiku-4-5")

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._messages)
        router.add_get("/v1/models", self._list_models)
        router.add_post("/v1/messages/count_tokens", self._count_tokens)

    def _presented_api_key(self, request: RecordedRequest) -> str | None:
        # The API documents `x-api-key`; the Python SDK 2.x sends its api_key as `Authorization: Bearer`.
        api_key = request.headers.get("x-api-key")
        if api_key is not None:
            return api_key
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def error_body(self, status: int, message: str, error_type: str | None, code: str | None) -> JsonObject:
        return {
            "type": "error",
            "error": {"type": error_type or default_error_type(status), "message": message},
            "request_id": self.script.request_id,
        }

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        _, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        data = [
            {"type": "model", "id": model, "display_name": display_name(model), "created_at": "2025-01-01T00:00:00Z"}
            for model in self.models
        ]
        return self.json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None,
            }
        )

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        """`input_tokens` of the script's prompt_tokens, as a Messages request would report them."""
        recorded, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body = recorded.body
        if body is None or not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            message = "The request needs a JSON body with 'model' and 'messages'."
            return self.json_response(self.error_body(400, message, None, None), status=400)
        return self.json_response({"input_tokens": self.script.prompt_tokens})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body = recorded.body
        if body is None or not all(isinstance(body.get(key), kind) for key, kind in _REQUIRED_FIELDS.items()):
            return self.json_response(
                self.error_body(400, "The request needs 'model', 'messages' and 'max_tokens'.", None, None),
                status=400,
            )
        script = self.script
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        model: str = body["model"]
        stop_reason = script.finish_reason or "end_turn"
        if body.get("stream") is not True:
            return self.json_response(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": script.text}],
                    "stop_reason": stop_reason,
                    "stop_sequence": script.stop_sequence,
                    "usage": {"input_tokens": script.prompt_tokens, "output_tokens": script.output_tokens},
                }
            )

        def event(name: str, payload: JsonObject) -> SseEvent:
            return SseEvent.of_json({"type": name, **payload}, event=name)

        message: JsonObject = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": script.prompt_tokens, "output_tokens": 1}
            if script.start_usage is None
            else script.start_usage,
        }
        text_block = script.events is None  # else the script's events hold their own blocks
        plan = StreamPlan(
            head=[
                event("message_start", {"message": message}),
                *(
                    [event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
                    if text_block
                    else []
                ),
                event("ping", {}),
            ],
            chunks=[
                event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
                for text in script.chunks
            ]
            if script.events is None
            else [event(payload["type"], payload) for payload in script.events],
            tail=[
                *([event("content_block_stop", {"index": 0})] if text_block else []),
                event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": stop_reason, "stop_sequence": script.stop_sequence},
                        "usage": {"output_tokens": script.output_tokens, **script.usage_details}
                        if script.delta_usage is None
                        else script.delta_usage,
                    },
                ),
                *(
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
                    for text in script.after_stop
                ),
                event("message_stop", {}),
            ],
            malformed=SseEvent('{"type": "content_block_delta", "index": 0, "delta": not JSON', "content_block_delta"),
            error=event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
        return await self.stream(request, plan)
