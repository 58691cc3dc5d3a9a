"""deploy/: every file parses and validates, and agrees with the code it deploys (no network).

* RabbitMQ definitions are exactly what ``shared.messaging.declare`` declares (regenerated file
  equals the committed one); a mismatch would make the services fail with PRECONDITION_FAILED.
* Kubernetes objects validate strictly against the schemas bundled with kubernetes-validate;
  KEDA objects against deploy/schemas/ (a hand-written subset: KEDA's CRDs ship in no package here);
  compose.yaml against the Compose Specification schema copied from docker-compose 1.29.2.
* Probes, ports, env var names, queue names and metric names match the settings classes,
  ``shared.messaging.Topology`` and ``shared.metrics``.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

import shared.metrics
from services.contacts.settings import ContactsSettings
from services.gateway.settings import GatewaySettings
from services.verifier.settings import VerifierSettings
from shared.events import FallbackReason
from doorman.ops import RETRY_DELAYS, all_queues
from shared.messaging import AT_LEAST_ONCE, broker_urls, CONTACTS_QUEUE, DELIVERY_LIMIT, VERIFIER_QUEUE, WORK_QUEUES, Topology
from shared.settings import DoormanSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest we support, newest kubernetes-validate bundles
PREFIX = VHOST = "doorman"
TOPOLOGY = Topology(PREFIX)
WORKER_QUEUE = {"verifier": VERIFIER_QUEUE, "contacts": CONTACTS_QUEUE}
SERVICE_SETTINGS: dict[str, type] = {
    "gateway": GatewaySettings, "verifier": VerifierSettings, "contacts": ContactsSettings, "migrate": DoormanSettings,
}
SERVICE_PORT = {"gateway": ("DOORMAN_GATEWAY_PORT", 8080), "verifier": ("DOORMAN_VERIFIER_PORT", 8081),
                "contacts": ("DOORMAN_CONTACTS_PORT", 8082)}
# rabbitmq_prometheus (3.13) names read per queue from /metrics/per-object; labels vhost, queue.
RABBITMQ_METRICS = {"rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
                    "rabbitmq_queue_messages", "rabbitmq_queue_consumers"}
RABBITMQ_LABELS = {"vhost", "queue"}
# kube-state-metrics, for the "not ready" alerts only.
KUBE_METRICS = {"kube_deployment_status_replicas_unavailable": {"namespace", "deployment"},
                "kube_job_status_failed": {"namespace", "job_name"}}
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
# Compose fields newer than the 2021 schema (docker-compose 1.29.2); each is removed before validating.
NEWER_THAN_COMPOSE_SCHEMA = [("name",), ("configs", "rabbitmq-users", "content")]


# ---------------------------------------------------------------- loading

def _files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)


def _load(path: Path) -> list[Any]:
    text = path.read_text()
    return [json.loads(text)] if path.suffix == ".json" else [d for d in yaml.safe_load_all(text) if d is not None]


def _k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d)
            for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml" for d in _load(p)]


def _objects(kind: str, *, include_example: bool = False) -> dict[str, dict[str, Any]]:
    found = {}
    for p in sorted(K8S.glob("*.yaml")):
        if p.name == "kustomization.yaml" or (p.name == "secret.example.yaml" and not include_example):
            continue
        for d in _load(p):
            if d["kind"] == kind:
                found[d["metadata"]["name"]] = d
    return found


def _env_names(cls: type) -> set[str]:
    return {f"DOORMAN_{name.upper()}" for name in cls.model_fields}  # type: ignore[attr-defined]


KEDA_KEY = "KEDA_RABBITMQ_HOST"  # the Secret's one key that is no setting: KEDA's single broker address
ALL_SETTINGS_ENV = set().union(*(_env_names(c) for c in SERVICE_SETTINGS.values()))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("doorman_deploy_generate", DEPLOY / "rabbitmq" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate() -> Any:
    return _generator()


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# ---------------------------------------------------------------- every file

@pytest.mark.parametrize("path", _files(".yaml", ".yml", ".json"), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    docs = _load(path)
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected mapping documents"


# ---------------------------------------------------------------- RabbitMQ

def test_definitions_json_is_what_the_generator_writes(generate: Any) -> None:
    committed = (DEPLOY / "rabbitmq" / "definitions.json").read_text()
    assert committed == generate.render(), "stale: run `python deploy/rabbitmq/generate.py`"


def test_definitions_declare_exactly_the_topology(generate: Any, definitions: dict[str, Any]) -> None:
    declared = generate.declared(PREFIX)  # shared.messaging.declare() run against a recording channel
    queues = {q["name"]: q for q in definitions["queues"]}
    assert set(queues) == set(all_queues(TOPOLOGY))
    assert len(queues) == len(definitions["queues"]), "a queue is defined twice"
    for q in declared.queues:
        d = queues[q["name"]]
        assert (d["durable"], d["auto_delete"], d["arguments"]) == (q["durable"], q["auto_delete"], q["arguments"])
        assert d["vhost"] == VHOST
    assert {(e["name"], e["type"], e["durable"]) for e in definitions["exchanges"]} == {
        (TOPOLOGY.exchange, "topic", True), (TOPOLOGY.dead_letter_exchange, "direct", True)}
    key = lambda b: json.dumps({k: v for k, v in b.items() if k != "vhost"}, sort_keys=True)  # noqa: E731
    assert sorted(map(key, definitions["bindings"])) == sorted(map(key, declared.bindings))
    assert definitions["vhosts"] == [{"name": VHOST}]
    assert "users" not in definitions and "permissions" not in definitions, "credentials never go in this file"


def test_queue_arguments_are_the_ones_the_services_need(definitions: dict[str, Any]) -> None:
    queues = {q["name"]: q["arguments"] for q in definitions["queues"]}
    for name in WORK_QUEUES:
        work = TOPOLOGY.queue(name)
        assert queues[work] == {
            "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": TOPOLOGY.dead_letter_exchange, "x-dead-letter-routing-key": work,
            **AT_LEAST_ONCE,
        }
        assert queues[TOPOLOGY.dead_letter_queue(name)] == {"x-queue-type": "quorum"}
        for delay in dict.fromkeys(RETRY_DELAYS[name]):
            assert queues[TOPOLOGY.retry_queue(name, delay)] == {
                "x-queue-type": "quorum", "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": work, **AT_LEAST_ONCE,
            }


def test_policies_only_add_what_queue_arguments_do_not_set(definitions: dict[str, Any]) -> None:
    """One policy applies to a queue, the highest-priority one matching it: every queue gets the leader locator,
    the dead-letter queues also their expiry (DOORMAN_DEAD_LETTER_TTL_DAYS, 14 by default), none anything its
    arguments set (the delay queues' TTL is theirs)."""
    policies = definitions["policies"]
    assert all(p["vhost"] == VHOST and p["apply-to"] in ("queues", "quorum_queues") for p in policies)
    assert not any(re.search(p["pattern"], "other.queue") for p in policies)
    for name in all_queues(TOPOLOGY):
        matching = [p for p in policies if re.search(p["pattern"], name)]
        top = max(p["priority"] for p in matching)
        [applied] = [p for p in matching if p["priority"] == top]
        expected = {"queue-leader-locator": "balanced"}
        if name.endswith(".dlq"):
            expected["message-ttl"] = 14 * 24 * 3600 * 1000
        assert applied["definition"] == expected, name


def test_rabbitmq_config_loads_the_definitions_and_plugins(compose: dict[str, Any]) -> None:
    conf = dict(
        (k.strip(), v.strip()) for line in (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") for k, v in [line.split("=", 1)]
    )
    assert conf["definitions.import_backend"] == "local_filesystem"
    directory = conf["definitions.local.path"]
    assert conf["prometheus.tcp.port"] == "15692" and conf["listeners.tcp.default"] == "5672"
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[(rabbitmq_management,rabbitmq_prometheus|rabbitmq_prometheus,rabbitmq_management)\]\.",
                        plugins)
    rabbit = compose["services"]["rabbitmq"]
    assert rabbit["image"] == "rabbitmq:3.13-management"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rabbit["volumes"] if v.startswith("./")}
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./rabbitmq/rabbitmq.conf"
    assert mounts["/etc/rabbitmq/enabled_plugins"] == "./rabbitmq/enabled_plugins"
    assert mounts[f"{directory}/10-topology.json"] == "./rabbitmq/definitions.json"
    users = rabbit["configs"][0]
    assert users["target"].startswith(directory + "/") and users["target"].endswith(".json")


# ---------------------------------------------------------------- Docker

def test_dockerfile_one_non_root_image_without_secrets_or_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert "HEALTHCHECK" not in instructions
    assert re.search(r"^USER 10001(:10001)?$", text, re.M), "numeric non-root user (runAsNonRoot can check it)"
    assert re.search(r'^ENTRYPOINT \["doorman"\]$', text, re.M)
    assert "pip install" in text
    assert not re.search(r"^(ENV|ARG)\s.*(SECRET|TOKEN|PASSWORD|AMQP_URL|DATABASE_URL)", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[next(i for i, l in enumerate(ignore) if not l.startswith("#"))] == "*", "allow-list context"
    copied = re.findall(r"^COPY (?!--)(\S+)", text, re.M)
    allowed = {l.lstrip("!").rstrip("/") for l in ignore if l.startswith("!")}
    assert set(copied) <= allowed | {"pyproject.toml", "README.md"}


# ---------------------------------------------------------------- Compose

def _without(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    del node[last]


def test_compose_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    doc = copy.deepcopy(compose)
    for path in NEWER_THAN_COMPOSE_SCHEMA:
        _without(doc, path)
    # The file says "$schema": "http://json-schema.org/draft/2019-09/schema#" (not the canonical URI).
    assert "2019-09" in schema["$schema"]
    validator_cls = jsonschema.Draft201909Validator
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # ...and each removed field is really one the old schema rejects (so the list stays honest).
    for kept in NEWER_THAN_COMPOSE_SCHEMA:
        doc = copy.deepcopy(compose)
        for path in NEWER_THAN_COMPOSE_SCHEMA:
            if path != kept:
                _without(doc, path)
        assert not validator_cls(schema).is_valid(doc), f"{kept} is in the schema after all: drop it from the list"


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"rabbitmq", "postgres", "migrate", "gateway", "verifier", "contacts", "edge"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    images = {services[s]["image"] for s in SERVICE_SETTINGS}
    assert len(images) == 1, "one image for every service"
    for name in ("gateway", "verifier", "contacts"):
        service = services[name]
        assert service["command"] == [name]
        assert service["deploy"]["replicas"] == 2
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        env_name, port = SERVICE_PORT[name]
        assert int(service["environment"][env_name]) == port
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and "urllib.request" in test[3]
        assert f"http://127.0.0.1:{port}/healthz" in test[3]
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace and int(grace.group(1)) > 10, "longer than the services' 10 s drain"
    gateway = services["gateway"]
    assert gateway["environment"]["DOORMAN_GATEWAY_HOST"] == "0.0.0.0"
    assert any(p.endswith(":8080") for p in services["edge"]["ports"])


def test_compose_gateway_has_no_way_out(compose: dict[str, Any]) -> None:
    """The gateway makes no outbound calls (docs/rules.md). On Compose it is on the internal network only (no route
    out of the host, so no port of its own either); the edge relays to it; only the verifier calls out."""
    services, networks = compose["services"], compose["networks"]
    internal = {name for name, network in networks.items() if (network or {}).get("internal") is True}
    assert services["gateway"]["networks"] == ["internal"] and internal == {"internal"}
    assert "ports" not in services["gateway"]
    outside = {name for name, s in services.items() if set(s.get("networks", [])) - internal}
    assert outside == {"verifier", "edge", "rabbitmq"}  # rabbitmq: its published management ports
    for name, service in services.items():
        assert service.get("networks"), f"{name}: on the default network, which has a way out"
    edge = services["edge"]
    assert edge["read_only"] is True and edge["cap_drop"] == ["ALL"]
    assert edge["depends_on"]["gateway"] == {"condition": "service_healthy"}
    (mount,) = edge["volumes"]
    conf = (DEPLOY / mount.split(":")[0].removeprefix("./")).read_text()
    assert "stream {" in conf and "set $gateway gateway:8080;" in conf and "listen 8080;" in conf


def test_compose_env_names_exist_in_the_settings(compose: dict[str, Any]) -> None:
    for name, cls in SERVICE_SETTINGS.items():
        env = compose["services"][name]["environment"]
        unknown = {k for k in env if k.startswith("DOORMAN_")} - _env_names(cls)
        assert not unknown, f"{name}: {unknown} is no setting of {cls.__name__} (pydantic-settings ignores it)"


def test_compose_secrets_come_only_from_the_env_file(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = dict(
        line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    optional = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):?-", text))
    assert referenced - optional <= set(example), "every required variable is in .env.example"
    secrets = {"RABBITMQ_PASSWORD", "RABBITMQ_ADMIN_PASSWORD", "POSTGRES_PASSWORD",
               "DOORMAN_ADMIN_TOKEN", "DOORMAN_SECRET_KEY"}
    assert secrets <= referenced
    assert all(example[s] == "" for s in secrets), ".env.example holds no secret values"
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("${"), f"{key} must come from deploy/.env"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()
    url = compose["services"]["gateway"]["environment"]["DOORMAN_AMQP_URL"]
    assert url.endswith(f"/{VHOST}"), "the vhost of definitions.json"


# ---------------------------------------------------------------- Kubernetes

@pytest.mark.parametrize("name,obj", _k8s_objects(), ids=[n for n, _ in _k8s_objects()])
def test_k8s_object_validates(name: str, obj: dict[str, Any]) -> None:
    if obj["apiVersion"].startswith("keda.sh/"):
        schema = json.loads((SCHEMAS / f"keda-{obj['kind'].lower()}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
        behavior = obj["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior:  # KEDA passes it to an autoscaling/v2 HPA: check it with Kubernetes' schema
            hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
                   "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1,
                            "behavior": behavior}}
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(hpa, version, strict=True)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "doorman"
    listed = kustomization["resources"]
    assert all((K8S / r).is_file() for r in listed)
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == manifests and len(listed) == len(set(listed))
    assert "secret.example.yaml" not in listed
    images = {i["name"] for i in kustomization["images"]}
    for deployment in _objects("Deployment").values():
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert c["image"].split(":")[0] in images


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def test_deployments_probe_health_and_readiness_on_the_service_port() -> None:
    deployments = _objects("Deployment")
    assert {_component(d) for d in deployments.values()} == {"gateway", "verifier", "contacts"}
    for deployment in deployments.values():
        service = _component(deployment)
        container = _container(deployment)
        env = {e["name"]: e.get("value") for e in container["env"]}
        env_name, default = SERVICE_PORT[service]
        port = int(env.get(env_name) or default)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [port]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{service} {probe}"
            assert ports.get(get["port"], get["port"]) == port, f"{service} {probe} port"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == port and annotations["prometheus.io/path"] == "/metrics"
        if service == "gateway":
            assert env["DOORMAN_GATEWAY_HOST"] == "0.0.0.0"
            assert container["args"] == ["gateway"]
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 10 + 5
        assert "replicas" not in deployment["spec"], "the HPA / KEDA owns the replica count"


def test_pods_are_non_root_read_only_and_bounded() -> None:
    pods = [d["spec"]["template"] for d in _objects("Deployment").values()]
    pods += [j["spec"]["template"] for j in _objects("Job").values()]
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_k8s_env_names_exist_in_the_settings_and_secrets_come_from_the_secret() -> None:
    config = next(iter(_objects("ConfigMap").values()))["data"]
    assert set(config) <= ALL_SETTINGS_ENV, set(config) - ALL_SETTINGS_ENV
    (secret,) = _objects("Secret", include_example=True).values()
    assert set(secret["stringData"]) - {KEDA_KEY} <= ALL_SETTINGS_ENV
    # Every node of the cluster, each on Doorman's vhost; KEDA's one address likewise.
    nodes = broker_urls(secret["stringData"]["DOORMAN_AMQP_URL"])
    assert len(nodes) == 3 and all(url.endswith(f"/{VHOST}") for url in nodes)
    assert len(broker_urls(secret["stringData"][KEDA_KEY])) == 1 and secret["stringData"][KEDA_KEY].endswith(f"/{VHOST}")
    workloads = {**{_component(d): d for d in _objects("Deployment").values()},
                 **{_component(j): j for j in _objects("Job").values()}}
    assert set(workloads) == set(SERVICE_SETTINGS)
    for service, workload in workloads.items():
        container = workload["spec"]["template"]["spec"]["containers"][0]
        names = {e["name"] for e in container.get("env", [])} | set(config)
        unknown = names - _env_names(SERVICE_SETTINGS[service]) - set(config)
        assert not unknown, f"{service}: {unknown} is no setting of {SERVICE_SETTINGS[service].__name__}"
        for e in container.get("env", []):
            if any(w in e["name"] for w in ("URL", "TOKEN", "SECRET", "PASSWORD")) and "MANAGEMENT" not in e["name"]:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "doorman-secrets" and ref["key"] in secret["stringData"]
        assert container["envFrom"] == [{"configMapRef": {"name": "doorman-config"}}]
        required = {"DOORMAN_AMQP_URL", "DOORMAN_DATABASE_URL"} if service != "migrate" else {"DOORMAN_DATABASE_URL"}
        if "secret_key" in SERVICE_SETTINGS[service].model_fields:  # type: ignore[attr-defined]
            required.add("DOORMAN_SECRET_KEY")
        if service == "gateway":
            required.add("DOORMAN_ADMIN_TOKEN")
        assert required <= names, f"{service} misses {required - names}"


def test_services_pdbs_and_autoscalers_select_the_deployments() -> None:
    deployments = _objects("Deployment")
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in _objects(kind).values():
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [d for d in deployments.values()
                       if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert len(matched) == 1, f"{kind} {obj['metadata']['name']}"
            if kind == "Service":
                ports = {p["name"]: p["containerPort"] for p in _container(matched[0])["ports"]}
                assert all(p["targetPort"] in ports for p in obj["spec"]["ports"])
    assert len(_objects("PodDisruptionBudget")) == 3 and len(_objects("Service")) == 3
    (hpa,) = _objects("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "doorman-gateway"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2


def test_keda_scales_each_worker_on_its_own_queue() -> None:
    scaled = _objects("ScaledObject")
    auth = _objects("TriggerAuthentication")
    (secret,) = _objects("Secret", include_example=True).values()
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {"doorman-verifier", "doorman-contacts"}
    for obj in scaled.values():
        service = obj["spec"]["scaleTargetRef"]["name"].removeprefix("doorman-")
        assert obj["spec"]["scaleTargetRef"]["name"] in _objects("Deployment")
        assert obj["spec"]["minReplicaCount"] >= 2
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["queueName"] == TOPOLOGY.queue(WORKER_QUEUE[service])
        ref = auth[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
        assert ref == [{"parameter": "host", "name": secret["metadata"]["name"], "key": KEDA_KEY}]


# What the Doorman pods depend on, by port (the egress every pod may have): DNS, RabbitMQ (AMQP, AMQPS),
# PostgreSQL, Redis, the OTLP collector (gRPC, HTTP).
DEPENDENCY_PORTS = {53, 5672, 5671, 5432, 6379, 4317, 4318}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"}


def _egress_of(pod_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every egress rule of the NetworkPolicies that select a pod with these labels (they add up)."""
    rules = []
    for policy in _objects("NetworkPolicy").values():
        if policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items():
            assert policy["spec"]["policyTypes"] == ["Egress"], "these policies restrict egress only"
            rules += policy["spec"]["egress"]
    return rules


def _pod_labels() -> dict[str, dict[str, str]]:
    workloads = [*_objects("Deployment").values(), *_objects("Job").values()]
    return {_component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads}


def test_every_pods_egress_is_restricted_to_named_peers_and_ports() -> None:
    for component, labels in _pod_labels().items():
        rules = _egress_of(labels)
        assert rules, f"{component}: no NetworkPolicy restricts its egress"
        for rule in rules:
            assert rule.get("to") and rule.get("ports"), f"{component}: a rule without peers or ports allows them all"
        dependencies = [r for r in rules if {p["port"] for p in r["ports"]} <= DEPENDENCY_PORTS]
        assert {p["port"] for r in dependencies for p in r["ports"]} == DEPENDENCY_PORTS, component


def test_the_gateway_reaches_its_dependencies_and_nothing_else() -> None:
    """The gateway makes no outbound calls (docs/rules.md; tests/e2e/test_no_egress.py shows it on a network)."""
    rules = _egress_of(_pod_labels()["gateway"])
    assert {p["port"] for r in rules for p in r["ports"]} == DEPENDENCY_PORTS
    blocks = [peer["ipBlock"]["cidr"] for r in rules for peer in r["to"] if "ipBlock" in peer]
    assert "0.0.0.0/0" not in blocks and "::/0" not in blocks
    assert _egress_of(_pod_labels()["contacts"]) == rules, "contacts calls out no more than the gateway"


def test_only_the_verifier_calls_out_and_never_to_private_ranges() -> None:
    config = next(iter(_objects("ConfigMap").values()))["data"]
    rules = _egress_of(_pod_labels()["verifier"])
    internet = [r for r in rules if any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in r["to"])]
    (rule,) = internet
    (v4,) = [p["ipBlock"] for p in rule["to"] if p["ipBlock"]["cidr"] == "0.0.0.0/0"]
    (v6,) = [p["ipBlock"] for p in rule["to"] if p["ipBlock"]["cidr"] == "::/0"]
    assert set(v4["except"]) == PRIVATE_RANGES
    assert {"fc00::/7", "fe80::/10"} <= set(v6["except"])
    ports = {p["port"] for p in rule["ports"]}
    assert ports == VerifierSettings.parse_ports(config["DOORMAN_OUTBOUND_PORTS"]), "the outbound ports the verifier uses"


def test_workers_serve_health_and_metrics_on_the_pod_address() -> None:
    """Probes and Prometheus reach the workers only if they bind the pod's address, not loopback."""
    for deployment in _objects("Deployment").values():
        service = _component(deployment)
        if service == "gateway":
            continue
        container = _container(deployment)
        assert container["args"] == [service] and "command" not in container
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["DOORMAN_HEALTH_HOST"] == "0.0.0.0"
        assert SERVICE_SETTINGS[service](health_host="0.0.0.0", environment="development").health_host == "0.0.0.0"


# ---------------------------------------------------------------- metrics: dashboard and alerts

def _doorman_metrics() -> dict[str, set[str]]:
    """Every series name Doorman exposes -> its label names (prometheus-client adds the suffixes)."""
    exposed: dict[str, set[str]] = {}
    for value in vars(shared.metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)  # noqa: SLF001
        if isinstance(value, Counter):
            exposed.update({f"{name}_total": labels, f"{name}_created": labels})
        elif isinstance(value, Histogram):
            exposed.update({f"{name}_bucket": labels | {"le"}, f"{name}_count": labels, f"{name}_sum": labels,
                            f"{name}_created": labels})
        elif isinstance(value, Gauge):
            exposed[name] = labels
        else:  # pragma: no cover - a new metric type: teach this test its suffixes
            raise AssertionError(f"unknown metric type {type(value)}")
    return exposed


DOORMAN_METRICS = _doorman_metrics()


def _dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "doorman-dashboard.json").read_text())


def _dashboard_exprs() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))
    return [t["expr"] for p in panels(_dashboard()["panels"]) for t in p.get("targets", [])]


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")


def _queue_names() -> set[str]:
    return set(all_queues(TOPOLOGY))


def _literal_alternatives(regex: str) -> list[str]:
    parts = regex.split("|")
    assert all(re.fullmatch(r"(?:[A-Za-z0-9_-]|\\\.)+", p) for p in parts), f"only literal names in {regex!r}"
    return [p.replace("\\.", ".") for p in parts]


def _check_expr(expr: str, where: str, *, kube_allowed: bool) -> set[str]:
    """Parse ``expr``; check metric names, label names and label values; return the metric names."""
    tree = promql_parser.parse(_grafana_to_promql(expr))
    names: set[str] = set()
    problems: list[str] = []

    def labels_of(name: str) -> set[str]:
        if name in DOORMAN_METRICS:
            return DOORMAN_METRICS[name] | TARGET_LABELS
        if name in RABBITMQ_METRICS:
            return RABBITMQ_LABELS | TARGET_LABELS
        return KUBE_METRICS.get(name, set()) | TARGET_LABELS

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            names.add(name)
            known = name in DOORMAN_METRICS or name in RABBITMQ_METRICS or (kube_allowed and name in KUBE_METRICS)
            if not known:
                problems.append(f"unknown metric {name}")
                return
            for m in node.matchers.matchers:
                if m.name not in labels_of(name):
                    problems.append(f"{name} has no label {m.name}")
                if m.name in {"bot", "le"}:  # free values (a Grafana variable, bucket bounds)
                    continue
                values = _literal_alternatives(m.value) if "Re" in str(m.op) else [m.value]
                if m.name == "queue":
                    allowed = _queue_names() if name.startswith("rabbitmq_") else set(WORK_QUEUES)
                    problems.extend([f"{name}: unknown queue {v}" for v in values if v not in allowed])
                elif m.name == "vhost":
                    problems.extend([f"vhost {v}" for v in values if v != VHOST])
                elif m.name == "reason" and name.startswith("doorman_outcomes"):
                    problems.extend([f"reason {v}" for v in values if v not in {r.value for r in FallbackReason}])
                elif m.name == "status" and name.startswith("doorman_outcomes"):
                    problems.extend([f"status {v}" for v in values if v not in {"verified", "fallback", "ended"}])
                elif m.name == "deployment":
                    problems.extend([f"deployment {v}" for v in values if v not in _objects("Deployment")])
                elif m.name == "job_name":
                    problems.extend([f"job {v}" for v in values if v not in _objects("Job")])
                elif m.name == "namespace":
                    problems.extend([f"namespace {v}" for v in values if v not in _objects("Namespace")])
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None \
                and "By" in str(node.modifier.type):
            inner: set[str] = set()
            promql_parser.walk(node.expr, lambda n: inner.add(n.name) if isinstance(n, promql_parser.VectorSelector)
                               else None)
            available = set().union(*(labels_of(n) for n in inner)) if inner else set()
            missing = set(node.modifier.labels) - available
            if missing:
                problems.append(f"grouping by {missing}, not labels of {inner}")

    promql_parser.walk(tree, visit)
    assert not problems, f"{where}: {problems}\n{expr}"
    return names


@pytest.mark.parametrize("expr", _dashboard_exprs())
def test_dashboard_queries_parse_and_use_existing_metrics_labels_and_queues(expr: str) -> None:
    _check_expr(expr, "dashboard", kube_allowed=False)


def test_dashboard_covers_every_doorman_metric_and_the_queues() -> None:
    dashboard = _dashboard()
    used = set().union(*(_check_expr(e, "dashboard", kube_allowed=False) for e in _dashboard_exprs()))
    suffix = {Counter: "_total", Histogram: "_bucket", Gauge: ""}
    every = {m._name + suffix[type(m)]  # noqa: SLF001
             for m in vars(shared.metrics).values() if isinstance(m, MetricWrapperBase)}
    assert every <= used, f"not on the dashboard: {every - used}"
    assert RABBITMQ_METRICS - {"rabbitmq_queue_messages"} <= used
    text = json.dumps(dashboard)
    for name in WORK_QUEUES:
        for q in (TOPOLOGY.queue(name), TOPOLOGY.dead_letter_queue(name)):
            assert q.replace(".", "\\\\\\\\.") in text, f"dashboard misses {q}"
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "bot"} <= variables
    for expr in _dashboard_exprs():
        assert "$" not in _grafana_to_promql(expr).replace("$bot", ""), f"undefined variable in {expr}"


ALERT_NAMES = {
    "DoormanQueueBacklogGrowing", "DoormanDeadLetters", "DoormanFallbackRateHigh", "DoormanInternalError",
    "DoormanPublishConfirmSlow", "DoormanSessionsSwept", "DoormanServiceNotReady",
}


def test_alerts_are_well_formed_and_use_existing_metrics() -> None:
    rules = _alert_rules()
    assert ALERT_NAMES <= {r["alert"] for r in rules}
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
        _check_expr(rule["expr"], rule["alert"], kube_allowed=True)
    by_name = {r["alert"]: r["expr"] for r in rules}
    assert "doorman_outcomes_total" in by_name["DoormanInternalError"] and "internal_error" in by_name["DoormanInternalError"]
    assert "doorman_sessions_swept_total" in by_name["DoormanSessionsSwept"]
    assert "doorman_publish_confirm_seconds_bucket" in by_name["DoormanPublishConfirmSlow"]


def test_readme_states_the_rabbitmq_metrics_endpoint() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "/metrics/per-object" in readme
    assert "doorman dlq replay" in readme and "secrets rotate" in readme
