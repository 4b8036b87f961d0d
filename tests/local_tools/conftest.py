"""Fixture of the local tool tests: the core Engine over the real registry and llama.cpp adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.local_engine import local_engine
from warpcore.server.core.engine import Engine


@pytest.fixture
async def engine(models_path: Path) -> AsyncIterator[Engine]:
    async with local_engine(models_path) as started:
        yield started
