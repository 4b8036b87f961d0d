"""An upstream's redirect is not followed: a tester's finding was the server's own Anthropic key (its x-api-key header
survives a change of host) and callers' prompts going to whatever host an upstream redirected to, past
--allowed-api-hosts too. The real server and the real SDKs against a loopback upstream that redirects everything."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from aiohttp import web

from tests.conftest import rich_details
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@contextlib.asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def load_and_list_failures(stub: Stub, base_url: str, backend: int) -> list[grpc.aio.AioRpcError]:
    """How a LoadModel and a ListModels of `backend` fail with the API at `base_url`."""
    config = pb.BackendConfig(api=pb.ApiConfig(api_key="sk-test-0123456789abcdef", base_url=base_url))
    load = pb.LoadModelRequest(backend=backend, model="m", backend_config=config)  # type: ignore[arg-type]
    listing = pb.ListModelsRequest(backend=backend, backend_config=config)  # type: ignore[arg-type]
    failures = []
    for call in (stub.LoadModel(load), stub.ListModels(listing)):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        failures.append(failed.value)
    return failures


@pytest.fixture
async def redirected() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A base URL whose every answer is a 307 to another origin, and what that other origin was sent."""
    reached: list[web.Request] = []

    async def capture(request: web.Request) -> web.Response:
        reached.append(request)
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    target = web.Application()
    target.router.add_route("*", "/{path:.*}", capture)
    async with serving_app(target) as other_origin:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(other_origin + request.path_qs)

        redirector = web.Application()
        redirector.router.add_route("*", "/{path:.*}", redirect)
        async with serving_app(redirector) as base_url:
            yield base_url, reached


@pytest.mark.parametrize("backend", [pb.BACKEND_TYPE_OPENAI, pb.BACKEND_TYPE_ANTHROPIC])
async def test_a_redirect_is_refused_and_nothing_reaches_where_it_points(
    stub: Stub, redirected: tuple[str, list[web.Request]], backend: int
) -> None:
    base_url, reached = redirected
    for refused in await load_and_list_failures(stub, base_url, backend):
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rich_details(refused)[0].reason == "UPSTREAM_REDIRECT"
        assert "(HTTP 307): a redirect, which this server does not follow" in (refused.details() or "")
    assert reached == []
