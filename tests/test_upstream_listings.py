"""An upstream's model list that is not its API's JSON (a proxy's HTML page, a body cut short) is UNAVAILABLE,
UPSTREAM_MALFORMED: the upstream's fault, to retry or fix there. A tester's finding was INTERNAL, "internal server
error; see the server log". The real server and the real SDKs against a loopback upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from aiohttp import web

from tests.conftest import rich_details
from tests.test_upstream_redirects import load_and_list_failures, serving_app
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LISTINGS = {
    "html": web.Response(text="<html><body>Sign in to the proxy</body></html>", content_type="text/html"),
    "cut": web.Response(text='{"object": "list", "data": [{"id": "m"', content_type="application/json"),
    # A tester's finding: entries without a string id were INTERNAL, as the proxy's page was.
    "no ids": web.json_response({"object": "list", "data": [{"id": "m"}, {"name": "n"}, {"id": 5}]}),
}


@pytest.fixture(params=sorted(LISTINGS))
async def unreadable_upstream(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A base URL whose every answer is one unreadable model list."""
    answer = LISTINGS[request.param]

    async def listing(_: web.Request) -> web.Response:
        return web.Response(body=answer.body, content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", listing)
    async with serving_app(app) as base_url:
        yield base_url


@pytest.mark.parametrize("backend", [pb.BACKEND_TYPE_OPENAI, pb.BACKEND_TYPE_ANTHROPIC])
async def test_a_model_list_that_is_not_json_is_the_upstreams_failure(
    stub: Stub, unreadable_upstream: str, backend: int
) -> None:
    base_url = unreadable_upstream + ("/v1" if backend == pb.BACKEND_TYPE_OPENAI else "")
    for failed in await load_and_list_failures(stub, base_url, backend):
        assert failed.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(failed)[0].reason == "UPSTREAM_MALFORMED"
        assert "the model list is not " in (failed.details() or "")
