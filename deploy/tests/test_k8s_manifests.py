"""The Kubernetes manifests: render with kustomize, validate offline, check what operators rely on.

Built-in kinds are validated (strict: unknown fields are errors) against the Kubernetes JSON
schemas that ship inside the `kubernetes-validate` wheel, for the oldest release we support and
the newest the wheel knows. CloudNativePG kinds are validated against schemas/cnpg/ (see
schemas/README.md). Any other custom kind fails the test until a schema is added.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import K8S, SCHEMAS, SERVICES

MIN_K8S = "1.29.0"
K8S_VERSIONS = sorted({MIN_K8S, kubernetes_validate.utils.latest_version()})

CRD_SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): SCHEMAS / "cnpg" / "cluster-postgresql-v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): SCHEMAS / "cnpg" / "scheduledbackup-postgresql-v1.json",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}


# --- helpers ------------------------------------------------------------------------------------
def ident(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objects: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected exactly one {kind}/{name}, found {len(hits)}"
    return hits[0]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and present and value in expr["values"]:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def validation_errors(obj: dict) -> list[str]:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads(CRD_SCHEMAS[key].read_text())
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{ident(obj)}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{ident(obj)} ({obj['apiVersion']}): no schema for Kubernetes {version} and none in schemas/")
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ident(obj)} @ {version}: {'/'.join(map(str, exc.absolute_path))}: {exc.message}")
    return errors


@pytest.fixture(scope="module", params=["base", "production"])
def rendered(request, base_objects, production_objects):
    return request.param, base_objects if request.param == "base" else production_objects


# --- rendering and schema validation ------------------------------------------------------------
def test_kubectl_has_kustomize_v5(kubectl):
    assert kubectl


def test_renders_and_validates_against_kubernetes_schemas(rendered):
    name, objects = rendered
    errors = [err for obj in objects for err in validation_errors(obj)]
    assert not errors, f"{name}:\n" + "\n".join(errors)


def test_validator_rejects_a_broken_manifest(base_objects):
    """The schema check must be able to fail: a misspelt field and a wrong type are caught."""
    deployment = copy.deepcopy(find(base_objects, "Deployment", "metering"))
    pod_spec(deployment)["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/healthz"}
    assert validation_errors(deployment)
    deployment = copy.deepcopy(find(base_objects, "Deployment", "metering"))
    pod_spec(deployment)["terminationGracePeriodSeconds"] = "60"
    assert validation_errors(deployment)


def test_cnpg_schema_rejects_typos(production_objects):
    cluster = copy.deepcopy(find(production_objects, "Cluster", "llmgw-pg"))
    cluster["spec"]["backup"]["barmanObjectStor"] = cluster["spec"]["backup"].pop("barmanObjectStore")
    assert validation_errors(cluster)
    cluster = copy.deepcopy(find(production_objects, "Cluster", "llmgw-pg"))
    cluster["spec"]["primaryUpdateStrategy"] = "automatic"
    assert validation_errors(cluster)
    backup = copy.deepcopy(find(production_objects, "ScheduledBackup", "llmgw-pg-daily"))
    del backup["spec"]["cluster"]
    assert validation_errors(backup)


def test_everything_is_namespaced_to_llmgw(rendered):
    _, objects = rendered
    for obj in objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "llmgw"
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"].get("namespace") == "llmgw", ident(obj)


# --- workloads ----------------------------------------------------------------------------------
def test_every_pod_meets_the_restricted_pod_security_standard(rendered):
    """The namespace enforces `restricted`; a pod that does not meet it would never start."""
    _, objects = rendered
    for obj in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
        spec = pod_spec(obj)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, ident(obj)
        assert psc.get("runAsUser", 0) != 0, ident(obj)
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", ident(obj)
        assert spec.get("automountServiceAccountToken") is False, ident(obj)
        for container in all_containers(spec):
            where = f"{ident(obj)} container {container['name']}"
            csc = container.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False, where
            assert csc.get("readOnlyRootFilesystem") is True, where
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not csc.get("capabilities", {}).get("add"), where
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in container.get("resources", {}).get(kind, {}), f"{where}: {kind}.{resource}"


def test_services_have_probes_drain_and_spread(rendered):
    _, objects = rendered
    for name in SERVICES:
        kind = "StatefulSet" if name == "edge-proxy" else "Deployment"
        obj = find(objects, kind, name)
        spec = pod_spec(obj)
        container = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == SERVICES[name][2]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        # the proxy keeps serving (spool, cached keys) while NATS or key-service is away: its probe
        # must not take every replica out of the Service during a shared dependency's outage
        expected = "/readyz?degraded=ok" if name == "edge-proxy" else "/readyz"
        assert container["readinessProbe"]["httpGet"]["path"] == expected, name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe} names an unknown port"
        # preStop sleep: endpoints are removed before SIGTERM; the drain must fit in the grace period
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep" and int(sleep[1]) > 0, name
        assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + 30, name
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, name
        for constraint in spec["topologySpreadConstraints"]:
            assert selector_matches(constraint["labelSelector"], pod_labels(obj)), name
        assert pod_labels(obj)["app.kubernetes.io/part-of"] == "llmgw"
        assert container.get("args", ["serve"]) == ["serve"]


def test_pod_disruption_budgets_cover_every_service(rendered):
    _, objects = rendered
    pdbs = of_kind(objects, "PodDisruptionBudget")
    for name in SERVICES:
        kind = "StatefulSet" if name == "edge-proxy" else "Deployment"
        labels = pod_labels(find(objects, kind, name))
        matching = [p for p in pdbs if selector_matches(p["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets"
        spec = matching[0]["spec"]
        assert spec.get("maxUnavailable", 0) >= 1 or spec.get("minAvailable", 0) >= 1


def test_autoscalers_own_edge_proxy_and_metering(rendered):
    _, objects = rendered
    hpas = {h["metadata"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"edge-proxy", "metering"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        obj = find(objects, target["kind"], target["name"])
        assert obj["apiVersion"] == target["apiVersion"]
        # the HPA owns replicas: a `replicas` in the manifest would fight it on every apply
        assert "replicas" not in obj["spec"], f"{ident(obj)} sets replicas but is autoscaled"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"], name
        for container in pod_spec(obj)["containers"]:
            assert "cpu" in container["resources"]["requests"], "CPU utilisation needs a CPU request"


def test_services_select_pods_and_name_real_ports(rendered):
    _, objects = rendered
    pods = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]
    for svc in of_kind(objects, "Service"):
        targets = [p for p in pods if selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(p))]
        assert targets, f"Service {svc['metadata']['name']} selects no pods"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in targets:
                container_ports = [p for c in pod_spec(pod)["containers"] for p in c.get("ports", [])]
                names = {p.get("name") for p in container_ports}
                numbers = {p["containerPort"] for p in container_ports}
                assert target in names or target in numbers, f"Service {svc['metadata']['name']}: {target}"


def test_edge_proxy_spool_is_a_per_pod_volume(rendered):
    _, objects = rendered
    config = find(objects, "ConfigMap", "llmgw-config")["data"]
    sts = find(objects, "StatefulSet", "edge-proxy")
    assert sts["spec"]["serviceName"] == "edge-proxy-headless"
    find(objects, "Service", "edge-proxy-headless")
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(sts)["containers"][0]["volumeMounts"]}
    spool = [name for name, path in mounts.items() if path == config["LLMGW_STATE_DIR"]]
    assert spool and spool[0] in claims, "LLMGW_STATE_DIR (the spool) must be on the per-pod claim"
    # a pod scaled away keeps its claim, so an unflushed spool is replayed when the ordinal returns
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert pod_spec(sts)["terminationGracePeriodSeconds"] >= 120


def test_config_map_binds_all_interfaces_and_disables_auto_migrate(rendered):
    _, objects = rendered
    config = find(objects, "ConfigMap", "llmgw-config")["data"]
    assert config["LLMGW_BIND_HOST"] == "0.0.0.0"
    assert config["LLMGW_AUTO_MIGRATE"] == "0"
    assert config["LLMGW_NATS_URL"] == "nats://nats:4222"
    for name, (_, _, port, port_env) in SERVICES.items():
        assert config[port_env] == str(port), name
    sts = find(objects, "StatefulSet", "edge-proxy")
    ports = {p["name"]: p["containerPort"] for p in pod_spec(sts)["containers"][0]["ports"]}
    assert str(ports["metrics"]) == config["LLMGW_PROXY_METRICS_PORT"]
    assert sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == config["LLMGW_PROXY_METRICS_PORT"]
    for value in config.values():
        assert isinstance(value, str)


def test_migrations_job_runs_both_services_migrations_in_order(rendered):
    _, objects = rendered
    job = find(objects, "Job", "llmgw-migrate")
    spec = pod_spec(job)
    commands = [c["command"] for c in spec["initContainers"]] + [c["command"] for c in spec["containers"]]
    assert commands == [
        ["python", "-m", "llmgw_keys", "migrate"],
        ["python", "-m", "llmgw_metering", "migrate"],
    ]
    assert spec["initContainers"][0]["image"].split(":")[0].endswith("key-service")
    assert spec["containers"][0]["image"].split(":")[0].endswith("metering")
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    assert job["spec"]["backoffLimit"] >= 1


def test_secret_references_resolve(rendered):
    """Every secretKeyRef names a key of a Secret that exists (base) or is documented (production)."""
    name, objects = rendered
    rendered_secrets = {s["metadata"]["name"]: set((s.get("stringData") or {}) | (s.get("data") or {}))
                        for s in of_kind(objects, "Secret")}
    # created outside kustomize in production: by the operator (CloudNativePG) or by the operator of
    # the cluster (docs/operations.md "Secrets")
    external = {
        "llmgw-pg-app": {"uri"},
        "llmgw-secrets": {"admin-token", "encryption-key", "openai-api-key", "anthropic-api-key"},
        "llmgw-pg-backup-s3": {"ACCESS_KEY_ID", "ACCESS_SECRET_KEY"},
    }
    known = rendered_secrets if name == "base" else {**external, **rendered_secrets}
    for obj in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
        for container in all_containers(pod_spec(obj)):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in known, f"{ident(obj)} {env['name']}: Secret {ref['name']}"
                    assert ref["key"] in known[ref["name"]], f"{ident(obj)} {env['name']}: key {ref['key']}"


def test_secrets_go_only_to_the_services_that_need_them(rendered):
    _, objects = rendered

    def secret_envs(obj):
        return {e["name"] for c in all_containers(pod_spec(obj)) for e in c.get("env", []) if "valueFrom" in e
                and "secretKeyRef" in e["valueFrom"]}

    assert secret_envs(find(objects, "StatefulSet", "edge-proxy")) == set()
    assert secret_envs(find(objects, "Deployment", "metering")) == {"LLMGW_DATABASE_URL", "LLMGW_ADMIN_TOKEN"}
    assert {"LLMGW_ENCRYPTION_KEY", "LLMGW_ADMIN_TOKEN", "LLMGW_DATABASE_URL"} <= secret_envs(
        find(objects, "Deployment", "key-service"))
    for obj in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
        for container in all_containers(pod_spec(obj)):
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{ident(obj)}: a whole Secret as env"


def test_base_secret_is_an_obvious_placeholder(base_objects):
    secret = find(base_objects, "Secret", "llmgw-secrets")
    for key, value in secret["stringData"].items():
        assert value == "" or "CHANGE-ME" in value, f"{key} does not look like a placeholder"


# --- network policies ---------------------------------------------------------------------------
def policies(objects):
    return of_kind(objects, "NetworkPolicy")


def test_default_deny_all(rendered):
    _, objects = rendered
    deny = [p for p in policies(objects) if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "no default-deny NetworkPolicy"


def test_only_edge_proxy_is_open_to_the_world(rendered):
    _, objects = rendered
    pods = {ident(o): pod_labels(o) for o in objects if o["kind"] in WORKLOAD_KINDS}
    open_to_all = []
    for policy in policies(objects):
        for rule in policy["spec"].get("ingress") or []:
            if not rule.get("from"):
                selected = [n for n, labels in pods.items() if selector_matches(policy["spec"]["podSelector"], labels)]
                open_to_all.append((policy["metadata"]["name"], selected, rule.get("ports")))
    assert open_to_all == [("edge-proxy", ["StatefulSet/edge-proxy"], [{"protocol": "TCP", "port": 8080}])]


def ingress_sources(objects, labels: dict, port: int) -> list[dict]:
    sources = []
    for policy in policies(objects):
        if not selector_matches(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress") or []:
            if any(p.get("port") == port for p in rule.get("ports") or []):
                sources.extend(rule.get("from") or [{"anywhere": True}])
    return sources


def test_nats_and_postgres_reachable_only_from_llmgw_pods(rendered):
    name, objects = rendered
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    nats_labels = {"llmgw/role": "nats", "app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"}
    db_labels = {"llmgw/role": "database", "cnpg.io/cluster": "llmgw-pg"}
    for labels, port, allowed in ((nats_labels, 4222, {"edge-proxy", "key-service", "metering"}),
                                  (db_labels, 5432, {"key-service", "metering", "llmgw-migrate"})):
        sources = ingress_sources(objects, labels, port)
        assert sources
        for source in sources:
            if port == 5432 and set(source) == {"namespaceSelector"}:
                # the CloudNativePG operator manages its instances (production only)
                assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "cnpg-system"}
                assert name == "production"
                continue
            assert set(source) == {"podSelector"}, f"port {port} open to {source}"
            reached = {pod_labels(w)["app.kubernetes.io/name"] for w in workloads
                       if selector_matches(source["podSelector"], pod_labels(w))}
            reached -= {"nats", "postgres"}  # peers of a NATS / CNPG cluster
            assert reached <= allowed, f"port {port} reachable from {reached - allowed}"
    # and every service can actually get there (egress side)
    for service, needs in (("edge-proxy", [(nats_labels, 4222)]),
                           ("key-service", [(nats_labels, 4222), (db_labels, 5432)]),
                           ("metering", [(nats_labels, 4222), (db_labels, 5432)]),
                           ("llmgw-migrate", [(db_labels, 5432)])):
        kind = {"edge-proxy": "StatefulSet", "llmgw-migrate": "Job"}.get(service, "Deployment")
        labels = pod_labels(find(objects, kind, service))
        for target, port in needs:
            ok = any(
                selector_matches(p["spec"]["podSelector"], labels)
                and any(any(x.get("port") == port for x in rule.get("ports") or [])
                        and any("podSelector" in t and selector_matches(t["podSelector"], target) for t in rule.get("to") or [])
                        for rule in p["spec"].get("egress") or [])
                for p in policies(objects))
            assert ok, f"{service} cannot reach port {port} ({name})"


def test_admin_and_analyst_apis_only_from_ingress_controller_and_monitoring(rendered):
    _, objects = rendered
    for service in ("key-service", "metering"):
        labels = pod_labels(find(objects, "Deployment", service))
        sources = ingress_sources(objects, labels, SERVICES[service][2])
        namespaces = {s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in sources}
        assert namespaces == {"ingress-nginx", "monitoring"}, service


# --- production specifics -----------------------------------------------------------------------
def test_production_replaces_dev_infrastructure(production_objects):
    names = {ident(o) for o in production_objects}
    for gone in ("StatefulSet/nats", "StatefulSet/postgres", "Service/nats", "Service/postgres", "Secret/llmgw-secrets"):
        assert gone not in names, f"{gone} must not be in the production overlay"
    assert not of_kind(production_objects, "Secret"), "production ships no Secret (no placeholder can leak)"
    cluster = find(production_objects, "Cluster", "llmgw-pg")
    assert cluster["spec"]["instances"] >= 3
    assert cluster["spec"]["imageName"].split(":")[-1].startswith("16")
    assert cluster["spec"]["inheritedMetadata"]["labels"]["llmgw/role"] == "database"
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "llmgw"
    assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    backup = find(production_objects, "ScheduledBackup", "llmgw-pg-daily")
    assert backup["spec"]["cluster"]["name"] == "llmgw-pg"
    assert len(backup["spec"]["schedule"].split()) == 6, "CloudNativePG schedules have a seconds field"


def test_production_reads_the_database_url_from_cloudnativepg(production_objects):
    for obj in (o for o in production_objects if o["kind"] in WORKLOAD_KINDS):
        for container in all_containers(pod_spec(obj)):
            for env in container.get("env", []):
                if env["name"] == "LLMGW_DATABASE_URL":
                    assert env["valueFrom"]["secretKeyRef"] == {"name": "llmgw-pg-app", "key": "uri"}, ident(obj)


def test_production_images_are_pinned_to_a_registry_and_tag(production_objects):
    for obj in (o for o in production_objects if o["kind"] in WORKLOAD_KINDS):
        for container in all_containers(pod_spec(obj)):
            image = container["image"]
            assert "/" in image.split(":")[0] and image.count(":") == 1, image
            assert image.rsplit(":", 1)[1] not in {"latest", "dev"}, image


def test_production_exports_traces_and_terminates_tls(production_objects):
    config = find(production_objects, "ConfigMap", "llmgw-config")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
    ingress = find(production_objects, "Ingress", "edge-proxy")
    assert ingress["spec"]["tls"]
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"edge-proxy"}, "only the edge proxy is exposed"


# --- NATS Helm values ---------------------------------------------------------------------------
def test_nats_helm_values():
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True and jetstream["fileStore"]["pvc"]["size"]
    assert values["podTemplate"]["merge"]["metadata"]["labels"]["llmgw/role"] == "nats"
    pod_security = values["podTemplate"]["merge"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    for part in ("container", "reloader", "promExporter"):
        security = values[part]["merge"]["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"], part
