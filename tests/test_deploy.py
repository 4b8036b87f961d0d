"""The Kubernetes manifests in deploy/kubernetes: strictly schema-valid and consistent with the server's settings."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path, PurePosixPath

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy_support import (
    MANIFEST_DIR,
    Resource,
    all_containers,
    env,
    env_value,
    load,
    only,
    pod_spec,
    warpcore_container,
)
from warpcore.server.preload import read_preload
from warpcore.v1 import inference_pb2

MANIFESTS = sorted(MANIFEST_DIR.glob("*.yaml"))
# The oldest release with every feature used on by default (native sidecars, the preStop sleep action), and the
# newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
GRPC_PORT = 50051
METRICS_PORT = 9090
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
BACKENDS = {"openai", "anthropic", "llama_cpp"}
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD")


def mounted_volume(pod: Resource, container: Resource, path: str) -> tuple[Resource, str]:
    """The volume holding `path` in `container`, and the path relative to the mount."""
    for mount in container.get("volumeMounts", []):
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            volume = next(volume for volume in pod["volumes"] if volume["name"] == mount["name"])
            return volume, str(PurePosixPath(path).relative_to(mount["mountPath"]))
    raise AssertionError(f"nothing is mounted at {path} in container {container['name']}")


@pytest.fixture(params=MANIFESTS, ids=lambda path: path.name)
def manifest(request: pytest.FixtureRequest) -> list[Resource]:
    path: Path = request.param
    return load(path)


def test_both_patterns_are_there() -> None:
    assert {path.name for path in MANIFESTS} >= {"sidecar.yaml", "replicated.yaml"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_passes_strict_schema_validation(path: Path, version: str) -> None:
    for resource in load(path):
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {name}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:  # the CLI only warns about these
            pytest.fail(f"{path.name}: {name}: {error.message}")


def test_strict_validation_rejects_unknown_fields_and_kinds() -> None:
    deployment = only(load(MANIFEST_DIR / "replicated.yaml"), "Deployment")
    kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({**deployment, "kind": "Deploymnet"}, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_are_native_grpc_on_the_tcp_port(manifest: list[Resource]) -> None:
    container = warpcore_container(pod_spec(manifest))
    assert {"livenessProbe", "readinessProbe"} <= container.keys()
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in container:
            handlers = container[kind].keys() & {"grpc", "httpGet", "tcpSocket", "exec"}
            assert handlers == {"grpc"}, kind
            assert container[kind]["grpc"]["port"] == GRPC_PORT, kind
    assert container["readinessProbe"]["grpc"]["service"] == INFERENCE_SERVICE
    assert container["livenessProbe"]["grpc"].get("service", "") == ""  # the whole server
    assert f"0.0.0.0:{GRPC_PORT}" in env_value(container, "WARPCORE_LISTEN").split(",")
    assert {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"} in container["ports"]


def test_containers_run_as_non_root_on_read_only_roots(manifest: list[Resource]) -> None:
    pod = pod_spec(manifest)
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in all_containers(pod):
        context = {**pod["securityContext"], **container["securityContext"]}
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] == 10001, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"requests", "limits"} <= container["resources"].keys(), container["name"]
    warpcore = warpcore_container(pod)
    for writable in ("/tmp", env_value(warpcore, "MODELS_PATH")):
        volume, _ = mounted_volume(pod, warpcore, writable)
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, writable


def test_secrets_come_only_from_secret_key_refs(manifest: list[Resource]) -> None:
    secret = only(manifest, "Secret")
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    assert values
    assert all(str(value).startswith("REPLACE_ME") for value in values.values()), "only placeholders in git"
    pod = pod_spec(manifest)
    for container in all_containers(pod):
        for name, variable in env(container).items():
            assert not str(variable.get("value", "")).startswith(("sk-", "sk-ant-")), name
            if SECRET_NAME.search(name) and not name.endswith("_FILE"):
                assert "value" not in variable, f"{name} is written inline"
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == secret["metadata"]["name"], name
                assert reference["key"] in values, name
    warpcore = env(warpcore_container(pod))
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= warpcore.keys()


def test_config_map_holds_the_preload_config(manifest: list[Resource], tmp_path: Path) -> None:
    pod = pod_spec(manifest)
    container = warpcore_container(pod)
    volume, file_name = mounted_volume(pod, container, env_value(container, "WARPCORE_CONFIG"))
    config_map = only(manifest, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key = next(item["key"] for item in volume["configMap"].get("items", []) if item["path"] == file_name)
    config = tomllib.loads(config_map["data"][key])
    secret_env = {name for name, variable in env(container).items() if "secretKeyRef" in variable.get("valueFrom", {})}
    assert config.keys() == {"models"}
    assert config["models"]
    for model in config["models"]:
        assert (
            {"id", "backend", "model"}
            <= model.keys()
            <= {"id", "backend", "model", "context_size", "api", "local", "lazy"}
        )
        assert model["backend"] in BACKENDS
        api = model.get("api", {})
        assert "api_key" not in api, "keys are never inlined: use api_key_env"
        if "api_key_env" in api:
            assert api["api_key_env"] in secret_env, f"{api['api_key_env']} is not set from a Secret"
    written = tmp_path / file_name
    written.write_text(config_map["data"][key])
    specs = read_preload(written, dict.fromkeys(secret_env, "sk-from-the-secret"))  # the server's own reader
    assert [spec.model_id for spec in specs] == [model["id"] for model in config["models"]]


def test_the_sidecar_s_hosted_models_are_lazy_so_an_unreachable_provider_does_not_stop_the_pod() -> None:
    config_map = only(load(next(path for path in MANIFESTS if path.name == "sidecar.yaml")), "ConfigMap")
    models = tomllib.loads(config_map["data"]["config.toml"])["models"]
    hosted = [model for model in models if model["backend"] in {"openai", "anthropic"}]
    assert hosted
    assert all(model.get("lazy") is True for model in hosted)


def test_token_file_is_mounted_from_the_secret(manifest: list[Resource]) -> None:
    pod = pod_spec(manifest)
    container = warpcore_container(pod)
    volume, file_name = mounted_volume(pod, container, env_value(container, "WARPCORE_TOKEN_FILE"))
    assert volume["secret"]["secretName"] == only(manifest, "Secret")["metadata"]["name"]
    assert file_name in {item["path"] for item in volume["secret"]["items"]}


def test_grace_period_outlasts_the_server_drain(manifest: list[Resource]) -> None:
    pod = pod_spec(manifest)
    container = warpcore_container(pod)
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > float(env_value(container, "WARPCORE_GRACE")) + pause


def test_metrics_are_exposed_and_annotated(manifest: list[Resource]) -> None:
    template = only(manifest, "Deployment")["spec"]["template"]
    container = warpcore_container(template["spec"])
    assert env_value(container, "WARPCORE_METRICS_PORT") == str(METRICS_PORT)
    assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)


def test_sidecar_shares_the_unix_socket_with_the_app() -> None:
    resources = load(MANIFEST_DIR / "sidecar.yaml")
    pod = pod_spec(resources)
    warpcore = warpcore_container(pod)
    assert warpcore in pod["initContainers"]
    assert warpcore["restartPolicy"] == "Always"  # a native sidecar: up before the app starts, down after it stops
    socket = "unix:///var/run/warpcore/warpcore.sock"
    assert socket in env_value(warpcore, "WARPCORE_LISTEN").split(",")
    (app,) = pod["containers"]
    assert env_value(app, "WARPCORE_TARGET") == socket
    path = socket.removeprefix("unix://")
    assert mounted_volume(pod, warpcore, path) == mounted_volume(pod, app, path)
    assert "emptyDir" in mounted_volume(pod, app, path)[0]


def test_sidecar_serves_the_http_door_to_the_app_on_the_pod_loopback() -> None:
    pod = pod_spec(load(MANIFEST_DIR / "sidecar.yaml"))
    warpcore = warpcore_container(pod)
    (app,) = pod["containers"]
    port = env_value(warpcore, "WARPCORE_HTTP_PORT")
    assert env_value(warpcore, "WARPCORE_HTTP_HOST") == "127.0.0.1"
    assert env_value(app, "OPENAI_BASE_URL") == f"http://127.0.0.1:{port}/v1"
    assert env_value(app, "ANTHROPIC_BASE_URL") == f"http://127.0.0.1:{port}"
    token = env(warpcore)  # the app's SDK keys are warpcore's token, from the same Secret
    assert token["WARPCORE_TOKEN_FILE"]
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        assert env(app)[key]["valueFrom"]["secretKeyRef"]["key"] == "warpcore-token"


def test_replicated_headless_service_pdb_and_metrics_service() -> None:
    resources = load(MANIFEST_DIR / "replicated.yaml")
    deployment = only(resources, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    services = {service["metadata"]["name"]: service["spec"] for service in resources if service["kind"] == "Service"}
    headless = services["warpcore-headless"]
    assert headless["clusterIP"] == "None"
    assert headless["ports"] == [
        {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
    ]
    metrics = services["warpcore-metrics"]
    assert [(port["name"], port["port"]) for port in metrics["ports"]] == [("metrics", METRICS_PORT)]
    for spec in (headless, metrics):
        assert spec["selector"].items() <= labels.items()
    budget = only(resources, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
    assert "dns:///warpcore-headless.default.svc.cluster.local:50051" in (MANIFEST_DIR / "replicated.yaml").read_text()
