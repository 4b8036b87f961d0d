"""The HTTP door's access-log line names the model a request's body named, whichever of its fields is refused."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.conftest import serving_doors
from tests.http_door import base_url
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions

BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    "/v1/messages": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"input": "hi"},
}


@pytest.mark.parametrize("route", BODIES)
async def test_a_request_refused_for_a_field_is_logged_with_the_model_it_named(
    doors: Doors, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A tester's finding: such a line said model "", as for a request refused before its body is read."""
    caplog.set_level("INFO", logger="warpcore.access")
    body: dict[str, Any] = {"model": "gpt-x", **BODIES[route], "bogus_field": 1}
    async with httpx2.AsyncClient() as client:
        response = await client.post(f"{base_url(doors)}{route}", json=body, headers={"x-request-id": "probe-1"})
    assert response.status_code == 400
    assert "bogus_field" in response.text
    (line,) = [record for record in caplog.records if getattr(record, "request_id", "") == "probe-1"]
    assert (line.method, line.code, line.model) == (route, "INVALID_ARGUMENT", "gpt-x")  # type: ignore[attr-defined]


async def test_a_model_that_is_no_string_is_logged_as_none(doors: Doors, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="warpcore.access")
    body: dict[str, Any] = {"model": ["gpt-x"], **BODIES["/v1/chat/completions"]}
    async with httpx2.AsyncClient() as client:
        response = await client.post(f"{base_url(doors)}/v1/chat/completions", json=body)
    assert response.status_code == 400
    (line,) = [record for record in caplog.records if getattr(record, "protocol", "") == "http"]
    assert (line.code, line.model) == ("INVALID_ARGUMENT", "")  # type: ignore[attr-defined]


async def test_a_model_named_in_the_path_is_logged(doors: Doors, caplog: pytest.LogCaptureFixture) -> None:
    """A tester's finding: `GET /v1/models/tiny` was logged with model "", though its path names one."""
    caplog.set_level("INFO", logger="warpcore.access")
    async with httpx2.AsyncClient() as client:
        response = await client.get(f"{base_url(doors)}/v1/models/absent", headers={"x-request-id": "probe-2"})
    assert response.status_code == 404
    (line,) = [record for record in caplog.records if getattr(record, "request_id", "") == "probe-2"]
    assert (line.method, line.code, line.model) == ("/v1/models/{model}", "NOT_FOUND", "absent")  # type: ignore[attr-defined]


async def test_a_body_over_the_limit_is_counted_resource_exhausted_as_grpc_counts_its_own(
    server_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """It was INVALID_ARGUMENT, where gRPC refuses a message too large with RESOURCE_EXHAUSTED, as either door does an
    image over its limit (a 413 too)."""
    caplog.set_level("INFO", logger="warpcore.access")
    async with (
        serving_doors(server_env, ServingOptions(max_message_bytes=1000)) as doors,
        httpx2.AsyncClient() as client,
    ):
        body = {"model": "gpt-x", "messages": [{"role": "user", "content": "x" * 2000}]}
        response = await client.post(f"{base_url(doors)}/v1/chat/completions", json=body)
        count = doors.engine.metrics.registry.get_sample_value
        labels = {"method": "/v1/chat/completions", "code": "RESOURCE_EXHAUSTED", "protocol": "http"}
        assert (response.status_code, count("warpcore_requests_total", labels)) == (413, 1)
    (line,) = [record for record in caplog.records if getattr(record, "protocol", "") == "http"]
    assert line.code == "RESOURCE_EXHAUSTED"  # type: ignore[attr-defined]
