"""The environment variables the warpcore client reads (the SDK and the command alike). It sits outside
warpcore.client, as _keep_alive does, so that the server reads it without importing the SDK: the server warns of a
WARPCORE_* variable nothing reads, and a sidecar's environment may hold the client's."""

from __future__ import annotations

TARGET_VARIABLE = "WARPCORE_TARGET"
TOKEN_VARIABLE = "WARPCORE_TOKEN"
CLIENT_VARIABLES = frozenset({TARGET_VARIABLE, TOKEN_VARIABLE})
