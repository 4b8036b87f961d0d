"""The memory the Kubernetes manifests in deploy/kubernetes ask for: enough for the default models, by the server's
own estimate, and for what a server holds beside it once used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy_support import MANIFEST_DIR, Resource, env, env_value, load, pod_spec, warpcore_container
from warpcore.server.adapters.llama.context import estimated_memory
from warpcore.server.adapters.llama.model_paths import open_model_file
from warpcore.server.adapters.llama.options import LlamaOptions
from warpcore.server.core.domain import LocalSettings
from warpcore.server.embedded import embedded_load_specs, install_embedded_model

MEBIBYTES = {"Mi": 1, "Gi": 1024}
STATED_ESTIMATE = re.compile(r"hold about (\d+(?:\.\d+)?) GiB by the server's own estimate")
BEYOND_THE_ESTIMATE = 384  # MiB
"""What a server of the default models holds once used beside their estimate, which leaves it out: llama.cpp's
compute buffers (a full embedding batch's above all), the pages the allocator keeps after one, the Python process."""


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * MEBIBYTES[unit]


@pytest.fixture(scope="module")
def embedded_models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_PATH holding the embedded model, as the image's first start assembles it."""
    path = tmp_path_factory.mktemp("models")
    install_embedded_model(path)
    return path


def default_models_estimate(container: Resource, models_path: Path) -> float:
    """The memory the server estimates the default models hold (what `warpcore models --residency` shows), in MiB,
    with the container's LLAMA_* settings."""
    settings = {name: variable["value"] for name, variable in env(container).items() if "value" in variable}
    total = 0
    for spec in embedded_load_specs(models_path):
        assert isinstance(spec.settings, LocalSettings)
        options = LlamaOptions.resolve(spec.settings, settings)
        with open_model_file(spec.name, str(models_path)) as file:
            estimate = estimated_memory(file, spec.context_size, options)
        assert estimate is not None, f"llama.cpp cannot read {spec.name}"
        total += estimate
    return total / 2**20


@pytest.mark.parametrize("name", ["sidecar.yaml", "replicated.yaml"])
def test_the_memory_covers_the_default_models_estimate_and_what_comes_on_top(
    name: str, embedded_models_path: Path
) -> None:
    # The scheduler places a Pod by its request, and the kernel kills a container that passes its limit: a request
    # below what the server holds once used lands the Pod on a node that cannot hold it, and a limit just above it
    # ends in an OOM kill after a few long embedding batches.
    path = MANIFEST_DIR / name
    container = warpcore_container(pod_spec(load(path)))
    assert env_value(container, "WARPCORE_DEFAULT_MODEL") == "1"
    estimate = default_models_estimate(container, embedded_models_path)
    stated = STATED_ESTIMATE.findall(path.read_text())
    assert len(stated) == 1, "the manifest states the default models' estimate once, beside the memory it asks for"
    assert float(stated[0]) * 1024 == pytest.approx(estimate, abs=0.05 * 1024)
    memory = container["resources"]
    request = mebibytes(memory["requests"]["memory"])
    assert request >= estimate + BEYOND_THE_ESTIMATE
    assert mebibytes(memory["limits"]["memory"]) >= request + BEYOND_THE_ESTIMATE
