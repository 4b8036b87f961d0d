"""Fixture of the shutdown tests: a MODELS_PATH holding the tiny model and its projector (a model that sees images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_projector import write_seeing_models


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seeing_models(tmp_path_factory.mktemp("models"))
