"""Shared by the tests/test_sdk_inputs_*.py modules (the Python SDK's checks of what it is given): an address no call
reaches, each client class, and a call's result whether sync or async."""

from __future__ import annotations

from typing import Any

import pytest

from warpcore.client import AsyncClient, Client

UNREACHABLE = "127.0.0.1:1"
"""For checks made before any call: a call would fail there with UnavailableError instead."""
CLIENTS = pytest.mark.parametrize("make", [Client, AsyncClient], ids=["sync", "async"])


async def maybe(result: Any) -> Any:
    """The result of a sync call, or of an async one awaited."""
    return await result if hasattr(result, "__await__") else result
