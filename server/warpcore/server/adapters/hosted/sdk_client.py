"""What every vendor SDK client is built with: its options, over the SDK's aiohttp transport, and the hook that reads an
error's body before the SDK does. Imported with the SDKs: a server checks its environment (config.py) before either."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import httpx2

from warpcore.server.adapters.hosted.config import ResolvedApi


class ClientOptions(TypedDict):
    api_key: str
    base_url: str
    timeout: float
    max_retries: int
    http_client: httpx2.AsyncClient


def client_options(api: ResolvedApi, aiohttp_client: Callable[..., httpx2.AsyncClient]) -> ClientOptions:
    """The options of an SDK client for `api`, over the SDK's aiohttp transport (`aiohttp_client`), which costs less
    CPU per streamed token than its default httpx2 one."""
    return ClientOptions(
        api_key=api.api_key,
        base_url=api.base_url,
        timeout=api.timeout,
        # No retries: a failure goes back to the caller at once, with RetryInfo where waiting helps, and the caller's
        # deadline is not spent on attempts it never asked for.
        max_retries=0,
        http_client=aiohttp_client(
            timeout=api.timeout,
            # A redirect is not followed: the key (Anthropic's x-api-key header survives a change of host) and the
            # prompt would go to a host the operator never named, past --allowed-api-hosts too.
            follow_redirects=False,
            event_hooks={"response": [read_error_body]},
        ),
    )


class ErrorBodyCut(httpx2.ReadError):
    """The connection broke in the body of an error status: the response it came in, whose status, request id and
    Retry-After the failure still tells."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__(f"the body of the HTTP {response.status_code} answer was cut short", request=response.request)
        self.response = response


async def read_error_body(response: httpx2.Response) -> None:
    """Reads an error status's body while the SDK is still sending the request, where it wraps a broken connection
    as any other: the openai SDK reads it later, past that wrapping, and a failure there escaped as httpx2's own;
    neither SDK kept the response, whose status said what the upstream meant to answer."""
    if not response.is_error:
        return
    try:
        await response.aread()
    except httpx2.TimeoutException:
        raise  # a wait that ran out, as the SDKs report it
    except httpx2.TransportError as error:
        raise ErrorBodyCut(response) from error
