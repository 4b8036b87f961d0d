"""The door's routes: generations in each dialect (whole or streamed) and the models they may name, on the engine."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from warpcore.server.core.access import record_embedding, record_failure, record_usage
from warpcore.server.core.bounds import quoted, read_off_loop_when_large
from warpcore.server.core.domain import FinishReason, GenerationParams, LoadSpec
from warpcore.server.core.embeddings import EmbedParams
from warpcore.server.core.engine import Engine, GenerationOutput, GenerationResult
from warpcore.server.core.errors import InvalidArgumentError, WarpcoreError
from warpcore.server.core.limits import shutting_down
from warpcore.server.core.model_ids import canonical_model_id
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.core.validation import check_model_id
from warpcore.server.http import anthropic_request, openai_embeddings, responses_request
from warpcore.server.http.body import json_body
from warpcore.server.http.collect import Collected
from warpcore.server.http.dialects import ANTHROPIC, COMPLETIONS, OPENAI, RESPONSES, Call, Dialect, Stream
from warpcore.server.http.fields import Json, boolean
from warpcore.server.http.members import NO_PROMPT_CACHE
from warpcore.server.http.parts import named_as
from warpcore.server.http.reasoning_memory import ReasoningMemory
from warpcore.server.http.sse import open_stream
from warpcore.server.http.targets import target_path

ANTHROPIC_PAGE = 20  # models in a page of Anthropic's model list unless `limit` says otherwise
ANTHROPIC_MAX_PAGE = 1000

ENGINE = web.AppKey("engine", Engine)
MEMORY = web.AppKey("reasoning_memory", ReasoningMemory)
REQUEST_ID = web.RequestKey("request_id", str)
MODEL = web.RequestKey("model", str)
"""The model a generation named, for the access log."""
OUTCOME = web.RequestKey("outcome", str)
"""How the call ended, as a domain code name, when not OK."""
HOPS: web.RequestKey[tuple[str, ...]] = web.RequestKey("hops")
"""The warpcore servers the request passed through before this one, as its Via header names them."""
_log = logging.getLogger("warpcore.server")
Params = TypeVar("Params", GenerationParams, EmbedParams)
Counted = TypeVar("Counted", anthropic_request.MessagesRequest, responses_request.ResponsesRequest)
Parsed = TypeVar("Parsed", anthropic_request.MessagesRequest, responses_request.ResponsesRequest, Call)


def request_ids(request: web.BaseRequest) -> dict[str, str]:
    """The request's id, under the header each SDK reads it from."""
    request_id = request[REQUEST_ID]
    return {"x-request-id": request_id, "request-id": request_id}


def dialect_of(request: web.Request) -> Dialect:
    """The dialect of a request's route; of a route both SDKs call (and of an unknown path), the one whose client
    sent it: Anthropic's clients send anthropic-version."""
    path = target_path(request)
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    if path.startswith(("/v1/chat/completions", "/v1/embeddings")):
        return OPENAI
    if path.startswith("/v1/responses"):
        return RESPONSES
    if path.startswith("/v1/completions"):
        return COMPLETIONS
    return ANTHROPIC if "anthropic-version" in request.headers else OPENAI


def _with_headers(request: web.Request, dialect: Dialect, params: GenerationParams) -> GenerationParams:
    """With the servers the request came through, and the Anthropic beta features the dialect's header names, for
    the backend that takes them."""
    params = _with_hops(request, params)
    if dialect.beta_header is None:
        return params
    values = request.headers.getall(dialect.beta_header, ())
    betas = tuple(beta.strip() for value in values for beta in value.split(",") if beta.strip())
    return dataclasses.replace(params, anthropic_betas=betas) if betas else params


def _with_hops(request: web.Request, params: Params) -> Params:
    hops = request.get(HOPS, ())
    return dataclasses.replace(params, hops=hops) if hops else params


async def _read(request: web.Request) -> dict[str, Any]:
    """The body, noting the model it names, as sent, for the access log (as gRPC's names it), should another of its
    fields be refused."""
    body = await json_body(request)
    named = body.get("model")
    request[MODEL] = named if isinstance(named, str) else ""
    return body


async def _parsed(request: web.Request, parse: Callable[[Json, int], Parsed], max_tokens: int) -> tuple[Json, Parsed]:
    """The body of a call and what `parse` makes of it: on a thread for a large body, whose hundred thousand messages
    take a good part of a second to read, during which the event loop would serve no other call."""
    body = await _read(request)
    size = len(await request.read())  # the body aiohttp keeps, read already: a chunked one has no Content-Length
    return body, await read_off_loop_when_large(size, parse, body, max_tokens)


async def _generate(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    body, call = await _parsed(request, dialect.parse, request.app[ENGINE].limits.default_max_tokens)
    # The answer names the model the call reached, as the vendors' APIs do: a GGUF file under its one id.
    call = dataclasses.replace(call, model=canonical_model_id(call.model))
    request[MODEL] = call.model
    params, memory = _with_headers(request, dialect, call.params), request.app[MEMORY]
    if dialect.remembers_reasoning:
        params = memory.restore(call.model, params)
    if boolean(body, NO_PROMPT_CACHE):  # warpcore's member in every dialect, as GenerationOptions has it
        params = dataclasses.replace(params, cache_prompt=False)
    generated = request.app[ENGINE].generate(call.model, params)
    if dialect.remembers_reasoning and memory.records(params):
        generated = memory.recorded(call.model, generated)
    # Closed on every way out, so that a client gone mid-stream stops the backend's work.
    async with contextlib.aclosing(generated) as outputs:
        # The first output (or the refusal: unknown model, full queue, bad request) comes before any header is
        # sent, so that every refusal is an HTTP status. The prompt's usage comes once the backend has taken the
        # request: a dialect that reports it opens its stream then, without waiting for the first token.
        with named_as(call.field_names):
            first = await anext(outputs)
            if isinstance(first, PromptUsage) and not (call.stream and dialect.early_usage):
                first = await anext(outputs)
        if call.stream:
            return await _stream(request, dialect.stream(call), first, outputs)
        collected = Collected(params.logprobs)
        collected.add(first)
        async for output in outputs:
            collected.add(output)
    assert collected.result is not None
    record_usage(collected.result.finish)
    if collected.reason is FinishReason.CANCELLED:
        raise shutting_down()
    return web.json_response(dialect.answer(call, collected), headers=request_ids(request))


async def _stream(
    request: web.Request, stream: Stream, first: GenerationOutput, outputs: AsyncGenerator[GenerationOutput, None]
) -> web.StreamResponse:
    if isinstance(first, GenerationResult) and first.finish.reason is FinishReason.CANCELLED:
        # Cut by the shutdown before anything was sent: a status, on which the SDKs retry on another replica.
        record_usage(first.finish)
        raise shutting_down()
    response = await open_stream(request, request_ids(request))
    pending = stream.start(first if isinstance(first, PromptUsage) else None)
    output = first
    cut = None
    try:
        while True:
            if isinstance(output, GenerationResult):
                record_usage(output.finish)
                if output.finish.reason is FinishReason.CANCELLED:
                    cut = output.finish
                    raise shutting_down()
                if output.finish.reason is not FinishReason.ERROR:  # else the error follows
                    pending += stream.end(output.finish)
            else:
                pending += stream.feed(output)
            await response.write(pending)
            pending = b""
            output = await anext(outputs)
    except StopAsyncIteration:
        pass
    except ConnectionResetError:
        request[OUTCOME] = "CANCELLED"  # the client went away: nobody to tell
    except Exception as error:  # noqa: BLE001 - after the headers, every failure ends the stream with an event
        failure = error if isinstance(error, WarpcoreError) else internal(error)
        record_failure(failure)
        request[OUTCOME] = failure.code.name
        with contextlib.suppress(ConnectionResetError):  # unless the client is gone too
            await response.write(pending + stream.fail(failure, request[REQUEST_ID], cut))
    return response


def internal(error: BaseException) -> WarpcoreError:
    _log.error("unexpected error", exc_info=error)
    return WarpcoreError("internal server error; see the server log")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, OPENAI)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, COMPLETIONS)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _generate(request, RESPONSES)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _generate(request, ANTHROPIC)


async def embeddings(request: web.Request) -> web.Response:
    call = openai_embeddings.embeddings_request(await _read(request))
    call = dataclasses.replace(call, model=canonical_model_id(call.model), params=_with_hops(request, call.params))
    request[MODEL] = call.model
    vectors = await openai_embeddings.embed(request.app[ENGINE], call)
    record_embedding(vectors)
    return web.json_response(openai_embeddings.embeddings_response(call, vectors), headers=request_ids(request))


async def _count(request: web.Request, dialect: Dialect, parse: Callable[[Json, int], Counted]) -> int:
    """The prompt tokens of a count's body, which `parse` reads as the generation request of `dialect` it counts, made
    as `_generate` makes its generation: the same count as the generation's prompt usage. The largest max_tokens
    allowed stands in for the body's, which a count does not take: any thinking budget a generation may have fits."""
    engine = request.app[ENGINE]
    _, call = await _parsed(request, parse, engine.limits.max_tokens)
    request[MODEL] = model = canonical_model_id(call.model)
    params = _with_headers(request, dialect, call.params)
    with named_as(call.field_names):
        return (await engine.count_tokens(model, params, include_tokens=False)).prompt_tokens


async def count_tokens(request: web.Request) -> web.Response:
    """Anthropic's count (POST /v1/messages/count_tokens) of a Messages request."""
    counted = await _count(request, ANTHROPIC, anthropic_request.messages_request)
    return web.json_response({"input_tokens": counted}, headers=request_ids(request))


async def input_tokens(request: web.Request) -> web.Response:
    """OpenAI's count (POST /v1/responses/input_tokens) of a Responses request, as the openai SDK's
    InputTokenCountResponse reads it."""
    counted = await _count(request, RESPONSES, functools.partial(responses_request.responses_request, counting=True))
    return web.json_response({"object": "response.input_tokens", "input_tokens": counted}, headers=request_ids(request))


def _model_entry(dialect: Dialect, spec: LoadSpec) -> dict[str, Any]:
    if dialect is ANTHROPIC:
        # created_at: the epoch, the API's own date for a release date it does not know.
        entry = {"type": "model", "id": spec.model_id, "display_name": spec.name, "created_at": "1970-01-01T00:00:00Z"}
        return {**entry, "lifecycle": "active"}
    return {"id": spec.model_id, "object": "model", "created": 0, "owned_by": spec.backend.value}


async def list_models(request: web.Request) -> web.Response:
    """Every model a request may name, loaded or not yet, as a client of the vendor's API expects."""
    dialect = dialect_of(request)
    entries = [_model_entry(dialect, spec) for spec in request.app[ENGINE].servable().values()]
    if dialect is ANTHROPIC:
        page, has_more = _anthropic_page(entries, request.query)
        body = {
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    else:
        body = {"object": "list", "data": entries}
    return web.json_response(body, headers=request_ids(request))


def _anthropic_page(entries: list[dict[str, Any]], query: Mapping[str, str]) -> tuple[list[dict[str, Any]], bool]:
    """The page Anthropic's `limit` (1 to 1000, 20 unless given), `after_id` and `before_id` ask for, and whether
    more lie beyond it in the direction paged."""
    limit_text = query.get("limit", str(ANTHROPIC_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= ANTHROPIC_MAX_PAGE:
        raise InvalidArgumentError(f"limit must be between 1 and {ANTHROPIC_MAX_PAGE}", field="limit")
    limit, ids = int(limit_text), [entry["id"] for entry in entries]
    if "after_id" in query and "before_id" in query:  # a page runs one way from one cursor
        raise InvalidArgumentError("give after_id or before_id, not both", field="before_id")
    for name in ("after_id", "before_id"):
        if name in query and query[name] not in ids:
            raise InvalidArgumentError(f"{name} {quoted(query[name])} is no listed model", field=name)
    if "before_id" in query:
        before = entries[: ids.index(query["before_id"])]
        return before[-limit:], len(before) > limit
    after = entries[ids.index(query["after_id"]) + 1 :] if "after_id" in query else entries
    return after[:limit], len(after) > limit


async def get_model(request: web.Request) -> web.Response:
    request[MODEL] = request.match_info["model"]  # as sent, for the access log, as a generation's body names it
    engine, model_id = request.app[ENGINE], check_model_id(request[MODEL])
    spec = engine.servable().get(model_id) or engine.registry.get(model_id).spec  # else NOT_FOUND, as a call gets
    return web.json_response(_model_entry(dialect_of(request), spec), headers=request_ids(request))


def add_routes(app: web.Application, expect: Callable[[web.Request], Awaitable[None]]) -> None:
    """The routes of both dialects; `expect` answers a request's `Expect: 100-continue` before its body is sent."""
    for path, handler in (
        ("/v1/chat/completions", chat_completions),
        ("/v1/completions", completions),
        ("/v1/responses", responses),
        ("/v1/messages", messages),
        ("/v1/messages/count_tokens", count_tokens),
        ("/v1/responses/input_tokens", input_tokens),
        ("/v1/embeddings", embeddings),
    ):
        app.router.add_post(path, handler, expect_handler=expect)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)  # a GGUF file's id may hold slashes
