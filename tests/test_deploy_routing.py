"""The manifests that put warpcore behind an inference gateway (deploy/inference-gateway: a pool of the gRPC port, one
of the HTTP door) and in KServe (deploy/kserve): their Kubernetes resources strictly schema-valid, the Pod parts of
the custom resources too (a ServingRuntime's containers and volumes are core types), and the custom resources
consistent with the replicas, the routes and the metrics the server really serves. No registry package carries the
InferencePool, GRPCRoute, HTTPRoute or KServe CRD schemas, so the custom resources themselves are checked field by
field here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from aiohttp import web

from tests.conftest import load_tiny
from tests.test_fleet_signals import scrape
from warpcore.server.http.routes import add_routes
from warpcore.server.preload import read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub
Resource = dict[str, Any]

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "deploy" / "inference-gateway" / "inference-pool.yaml"
HTTP_GATEWAY = ROOT / "deploy" / "inference-gateway" / "inference-pool-http.yaml"
POOLS = (GATEWAY, HTTP_GATEWAY)
KSERVE = ROOT / "deploy" / "kserve" / "serving-runtime.yaml"
REPLICATED = ROOT / "deploy" / "kubernetes" / "replicated.yaml"
DEPLOYING = ROOT / "docs" / "deploying.md"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
KUBERNETES_DEFAULT_GRACE = 30  # seconds: a Pod's terminationGracePeriodSeconds when its spec sets none
CUSTOM_GROUPS = ("inference.networking.k8s.io/", "gateway.networking.k8s.io/", "serving.kserve.io/")
GRPC_PORT = 50051
# The path suffixes llm-d-router v0.10.0's parsers claim (each parser's Claims(), pkg/epp/framework/plugins/
# requesthandling/parsers): a request goes to the first listed parser claiming its path, else to the one that claims
# none (passthrough-parser, the fallback), else is refused by the picker.
PARSER_CLAIMS = {
    "openai-parser": (
        "chat/completions",
        "completions",
        "embeddings",
        "responses",
        "conversations",
        "chat/completions/render",
        "completions/render",
        "images/generations",
    ),
    "anthropic-parser": ("messages", "messages/count_tokens"),
    "passthrough-parser": (),
}
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def load(path: Path) -> list[Resource]:
    return load_text(path.read_text())


def load_text(text: str) -> list[Resource]:
    return [document for document in yaml.safe_load_all(text) if document]


def only(resources: list[Resource], kind: str) -> Resource:
    (found,) = (resource for resource in resources if resource["kind"] == kind)
    return found


def validate(resource: Resource) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{resource['kind']} {resource['metadata']['name']} on {version}: {error.message}")


@pytest.mark.parametrize("path", [*POOLS, KSERVE], ids=lambda path: path.stem)
def test_kubernetes_resources_pass_strict_schema_validation(path: Path) -> None:
    resources = load(path)
    core = [resource for resource in resources if not resource["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert core, "each example carries some core resources"
    for resource in core:
        validate(resource)


def test_the_pool_selects_the_replicas_on_their_grpc_port_over_h2c() -> None:
    resources = load(GATEWAY)
    pool = only(resources, "InferencePool")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    spec = pool["spec"]
    assert spec["appProtocol"] == "kubernetes.io/h2c"
    assert spec["targetPorts"] == [{"number": GRPC_PORT}]
    replicas = only(load(REPLICATED), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= replicas.items()
    assert replicas["llm-d.ai/engine-type"] == "warpcore"
    picker = spec["endpointPickerRef"]
    service = only(resources, "Service")
    assert picker["name"] == service["metadata"]["name"]
    assert picker["port"]["number"] in [port["port"] for port in service["spec"]["ports"]]
    assert picker["failureMode"] in ("FailOpen", "FailClose")
    route = only(resources, "GRPCRoute")
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"method": {"service": INFERENCE_SERVICE}}]
    assert rule["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": pool["metadata"]["name"]}
    ]


def picker_config(path: Path = GATEWAY) -> Resource:
    config: Resource = yaml.safe_load(only(load(path), "ConfigMap")["data"]["plugins.yaml"])
    return config


@pytest.mark.parametrize("path", POOLS, ids=lambda path: path.stem)
def test_the_picker_runs_the_release_its_config_was_checked_against(path: Path) -> None:
    (container,) = only(load(path), "Deployment")["spec"]["template"]["spec"]["containers"]
    image, tag = container["image"].rsplit(":", 1)
    assert image == "ghcr.io/llm-d/llm-d-router-endpoint-picker"
    # The picker refuses a config key its release does not know: the docs name the release the config was read
    # against, and the image runs that one.
    checked = re.search(r"checked against llm-d-router (v\d+\.\d+\.\d+)", DEPLOYING.read_text())
    assert checked, "docs/deploying.md names the llm-d-router release the picker's config was checked against"
    assert tag == checked[1]


def test_the_picker_hands_warpcore_calls_to_the_passthrough_parser() -> None:
    config = picker_config()
    # Declared alone, a parser is not used: the picker keeps its default OpenAI, Anthropic and vLLM parsers, none of
    # which claims a warpcore.v1 method's path, and finds no parser for the call.
    assert config["requestHandler"]["parsers"] == [{"pluginRef": "passthrough-parser"}]
    declared = {plugin.get("name", plugin["type"]) for plugin in config["plugins"]}
    assert "passthrough-parser" in declared
    (profile,) = config["schedulingProfiles"]
    assert {plugin["pluginRef"] for plugin in profile["plugins"]} <= declared


def test_the_http_pool_selects_the_replicas_on_their_http_door() -> None:
    resources = load(HTTP_GATEWAY)
    pool = only(resources, "InferencePool")
    spec = pool["spec"]
    template = only(load(REPLICATED), "Deployment")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # One port, named `http` on the replicas, served by the door on the Pod IP, with the token both doors take.
    assert ports["http"] == int(env["WARPCORE_HTTP_PORT"]) not in (GRPC_PORT, ports["metrics"])
    assert env["WARPCORE_HTTP_HOST"] == "0.0.0.0"
    assert env["WARPCORE_TOKEN_FILE"]
    assert container["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": INFERENCE_SERVICE}
    assert spec["targetPorts"] == [{"number": ports["http"]}]
    assert spec["appProtocol"] == "http"  # aiohttp speaks HTTP/1.1: the parsers claim both protocols
    assert spec["selector"] == only(load(GATEWAY), "InferencePool")["spec"]["selector"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    # Its own picker: a picker serves the one pool its --pool-name names.
    picker = spec["endpointPickerRef"]
    service = only(resources, "Service")
    assert picker["name"] == service["metadata"]["name"] != only(load(GATEWAY), "Service")["metadata"]["name"]
    assert picker["port"]["number"] in [port["port"] for port in service["spec"]["ports"]]
    (epp,) = only(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert f"--pool-name={pool['metadata']['name']}" in epp["args"]
    route = only(resources, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    assert rule["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": pool["metadata"]["name"]}
    ]
    assert route["spec"]["parentRefs"] == only(load(GATEWAY), "GRPCRoute")["spec"]["parentRefs"]


def parser_of(path: str, parsers: list[str]) -> str | None:
    """The parser llm-d-router v0.10.0 gives a request for `path`, of those configured, in their order."""
    for parser in parsers:
        if any(path.rstrip("/").endswith(claim) for claim in PARSER_CLAIMS[parser]):
            return parser
    return next((parser for parser in parsers if not PARSER_CLAIMS[parser]), None)


async def expect_nothing(request: web.Request) -> None:
    """The door's routes are read here, never called."""


def test_the_http_picker_reads_the_model_of_every_generation_and_passes_the_rest_on() -> None:
    config = picker_config(HTTP_GATEWAY)
    parsers = [parser["pluginRef"] for parser in config["requestHandler"]["parsers"]]
    # The release's defaults for OpenAI and Anthropic bodies (its vllmhttp-parser claims a path warpcore has not),
    # and passthrough last: a parser after the fallback would be skipped.
    assert parsers == ["openai-parser", "anthropic-parser", "passthrough-parser"]
    assert set(parsers) <= {plugin.get("name", plugin["type"]) for plugin in config["plugins"]}
    app = web.Application()
    add_routes(app, expect_nothing)
    methods = {resource.canonical: {route.method for route in resource} for resource in app.router.resources()}
    assert all(path.startswith("/v1/") for path in methods), methods  # under the HTTPRoute's prefix
    posted = {path for path, allowed in methods.items() if "POST" in allowed}
    routed = {path: parser_of(path, parsers) for path in posted}
    assert routed == {
        "/v1/chat/completions": "openai-parser",
        "/v1/completions": "openai-parser",
        "/v1/embeddings": "openai-parser",
        "/v1/responses": "openai-parser",
        "/v1/messages": "anthropic-parser",
        "/v1/messages/count_tokens": "anthropic-parser",
        "/v1/responses/input_tokens": "passthrough-parser",  # no parser claims it: the picker would refuse it
    }


def test_both_pickers_scrape_and_score_alike() -> None:
    grpc, http = picker_config(GATEWAY), picker_config(HTTP_GATEWAY)
    assert grpc["schedulingProfiles"] == http["schedulingProfiles"]
    parsers = {"passthrough-parser", "openai-parser", "anthropic-parser"}
    assert [plugin for plugin in grpc["plugins"] if plugin["type"] not in parsers] == [
        plugin for plugin in http["plugins"] if plugin["type"] not in parsers
    ]
    # The two files differ only in their names and the pool each picker serves, not in how a picker runs.
    grpc_text = GATEWAY.read_text().replace("warpcore-epp", "warpcore-http-epp")
    grpc_text = grpc_text.replace("--pool-name=warpcore\n", "--pool-name=warpcore-http\n")
    for kind in ("ServiceAccount", "RoleBinding", "Deployment", "Service"):
        assert only(load_text(grpc_text), kind) == only(load(HTTP_GATEWAY), kind), kind
    assert only(load(GATEWAY), "Role")["rules"] == only(load(HTTP_GATEWAY), "Role")["rules"]


@pytest.mark.parametrize("path", POOLS, ids=lambda path: path.stem)
def test_the_picker_may_read_what_it_watches(path: Path) -> None:
    resources = load(path)
    role = only(resources, "Role")
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if sorted(rule["verbs"]) == ["get", "list", "watch"]
    }
    # As the release's own chart grants its picker: the pool, its Pods, and the objectives and model rewrites it
    # watches whenever their CRDs are installed, under both API groups they are served in.
    objectives = {
        (group, resource)
        for group in ("llm-d.ai", "inference.networking.x-k8s.io")
        for resource in ("inferenceobjectives", "inferencemodelrewrites")
    }
    assert granted == {("", "pods"), ("inference.networking.k8s.io", "inferencepools")} | objectives
    assert len(granted) == sum(len(rule["apiGroups"]) * len(rule["resources"]) for rule in role["rules"])
    binding = only(resources, "RoleBinding")
    pod = only(resources, "Deployment")["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"]}]


@pytest.mark.parametrize("path", POOLS, ids=lambda path: path.stem)
async def test_the_picker_reads_metric_names_the_server_serves(path: Path, server: WarpcoreServer, stub: Stub) -> None:
    config = picker_config(path)
    plugins = {plugin["type"]: plugin.get("parameters", {}) for plugin in config["plugins"]}
    (engine,) = plugins["core-metrics-extractor"]["engineConfigs"]
    assert engine["name"] == plugins["core-metrics-extractor"]["defaultEngine"] == "warpcore"
    assert plugins["metrics-data-source"]["port"] == 9090
    await load_tiny(stub)
    http = server.metrics.serve("127.0.0.1", 0)
    try:
        served = {name for name, model in scrape(http.server_port) if not model}
    finally:
        http.shutdown()
    for spec in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec"):
        assert engine[spec] in served


def test_the_kserve_runtime_serves_grpc_on_the_h2c_port_with_lazy_models(tmp_path: Path) -> None:
    resources = load(KSERVE)
    runtime = only(resources, "ServingRuntime")
    spec = runtime["spec"]
    (container,) = spec["containers"]
    # The runtime's Pod parts are core types: validated as a Pod's.
    validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "serving-runtime"},
            "spec": {"containers": spec["containers"], "volumes": spec["volumes"]},
        }
    )
    assert container["ports"] == [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    env = {variable["name"]: variable["value"] for variable in container["env"] if "value" in variable}
    assert env["WARPCORE_LISTEN"].endswith(f":{GRPC_PORT}")
    # llama.cpp's threads follow the CPU limit, as in the other manifests, not the node's cores.
    (threads,) = [variable for variable in container["env"] if variable["name"] == "LLAMA_THREADS"]
    limit = threads["valueFrom"]["resourceFieldRef"]
    assert (limit["containerName"], limit["resource"]) == (container["name"], "limits.cpu")
    assert container["resources"]["limits"]["cpu"]
    assert env["MODELS_PATH"] == "/mnt/models"  # where KServe mounts the storageUri
    # The drain ends inside the Pod's termination grace, which the runtime cannot set: Kubernetes' default, 30 s.
    assert float(env["WARPCORE_GRACE"]) < KUBERNETES_DEFAULT_GRACE
    assert container["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": INFERENCE_SERVICE}
    config_map = only(resources, "ConfigMap")
    volume, scratch = spec["volumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mount, tmp = container["volumeMounts"]
    assert env["WARPCORE_CONFIG"] == f"{mount['mountPath']}/config.toml"
    # A read-only root filesystem, and a writable /tmp beside it.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (tmp["name"], tmp["mountPath"]) == ("warpcore-tmp", "/tmp")
    assert scratch == {"name": "warpcore-tmp", "emptyDir": {}}
    config = tmp_path / "config.toml"
    config.write_text(config_map["data"]["config.toml"])
    assert tomllib.loads(config.read_text())["models"]
    assert all(spec.lazy for spec in read_preload(config, {}))
    service = only(resources, "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [format["name"] for format in spec["supportedModelFormats"]]
