"""Shared by tests/test_deploy.py and tests/test_deploy_memory.py: the manifests in deploy/kubernetes read as
resources, and the parts of their Deployment the tests look at (the Pod, warpcore's container, its environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
IMAGE = "ghcr.io/warpcore/warpcore-server:"


def load(path: Path) -> list[Resource]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def only(resources: list[Resource], kind: str) -> Resource:
    matching = [resource for resource in resources if resource["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, found {len(matching)}"
    return matching[0]


def pod_spec(resources: list[Resource]) -> Resource:
    spec: Resource = only(resources, "Deployment")["spec"]["template"]["spec"]
    return spec


def all_containers(pod: Resource) -> list[Resource]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def warpcore_container(pod: Resource) -> Resource:
    matching = [container for container in all_containers(pod) if container["image"].startswith(IMAGE)]
    assert len(matching) == 1
    return matching[0]


def env(container: Resource) -> dict[str, Resource]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def env_value(container: Resource, name: str) -> str:
    value = env(container)[name]["value"]
    assert isinstance(value, str), f"{name} must be a YAML string, not {value!r}"
    return value
