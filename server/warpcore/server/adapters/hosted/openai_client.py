"""The openai SDK's client for a model's resolved settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import openai

from warpcore.server.adapters.hosted.config import ResolvedApi
from warpcore.server.adapters.hosted.sdk_client import client_options
from warpcore.server.core.domain import ApiSettings
from warpcore.server.core.hops import via_header


def openai_client(settings: ApiSettings, api: ResolvedApi) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        **client_options(api, openai.DefaultAioHttpClient),
        organization=api.organization,
        default_headers={**via_header(), **_without_server_identity(settings, api)},
    )


def _without_server_identity(settings: ApiSettings, api: ResolvedApi) -> Mapping[str, str]:
    """The SDK sends OPENAI_ORG_ID and OPENAI_PROJECT_ID from the server's environment with every request: not to a
    base URL a client named, which would learn which organization and project the server's key bills."""
    if not settings.base_url:
        return {}
    headers: dict[str, object] = {"OpenAI-Project": openai.omit}
    if api.organization is None:
        headers["OpenAI-Organization"] = openai.omit
    return cast("Mapping[str, str]", headers)  # omit takes a header out, as the SDK's own defaults do
