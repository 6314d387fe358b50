"""docker-compose.yml: valid against the Compose Specification schema, and scalable as documented.

No Docker engine here: the file is interpolated the way Compose does it (`${VAR}`, `${VAR:-x}`,
`${VAR:?err}`, ...) with a test environment, then validated against the vendored schema
(schemas/compose-spec.json), then checked for what `docker compose up --scale edge-proxy=3
--scale metering=2` needs.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from conftest import COMPOSE_FILE, DEPLOY, DOCKERFILE, REPO, SCHEMAS, SERVICES

TEST_ENV = {
    "LLMGW_ADMIN_TOKEN": "llmgw-admin-test",
    "LLMGW_ENCRYPTION_KEY": "test-encryption-key",
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-password",
}
REQUIRED_VARIABLES = set(TEST_ENV)
SCALED = {"edge-proxy", "metering", "key-service"}
#: services that legitimately have no running healthcheck, and why
NO_HEALTHCHECK = {
    "migrate": "one-shot job: its exit status is what the services wait for",
    "otel-collector": "image built FROM scratch: no shell or HTTP client to run a probe with",
}


# --- Compose-style interpolation ----------------------------------------------------------------
class MissingVariable(Exception):
    pass


_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate_string(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        expr = match.group("braced")
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])(.*))?", expr, re.S)
        if not m:
            raise ValueError(f"bad substitution ${{{expr}}}")
        name, colon, op, arg = m.groups()
        is_set = name in env
        is_empty = not env.get(name)
        missing = (not is_set) or (colon == ":" and is_empty)
        if op is None:
            return env.get(name, "")
        if op == "-":
            return arg if missing else env[name]
        if op == "?":
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        return "" if missing else arg  # op == "+"

    return _VAR.sub(replace, value)


def interpolate(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def test_interpolation_helper_follows_compose_rules():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_string("${SET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$$-${SET:+alt}", env) == "v-d-d--$-alt"
    with pytest.raises(MissingVariable):
        interpolate_string("${EMPTY:?need it}", env)
    assert interpolate_string("${EMPTY?need it}", env) == ""


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose(compose_raw) -> dict:
    return interpolate(compose_raw, TEST_ENV)


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


def schema_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


# --- schema -------------------------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification(compose, compose_schema):
    errors = schema_errors(compose_schema, compose)
    assert not errors, "\n".join(errors)


def test_schema_check_can_fail(compose, compose_schema):
    broken = copy.deepcopy(compose)
    broken["services"]["edge-proxy"]["healtcheck"] = broken["services"]["edge-proxy"].pop("healthcheck")
    assert schema_errors(compose_schema, broken)
    broken = copy.deepcopy(compose)
    broken["services"]["metering"]["depends_on"]["nats"]["condition"] = "service_ready"
    assert schema_errors(compose_schema, broken)


@pytest.mark.parametrize("variable", sorted(REQUIRED_VARIABLES))
def test_secrets_are_required_variables(compose_raw, variable):
    """Compose refuses to start without the secrets instead of running with empty ones."""
    env = {k: v for k, v in TEST_ENV.items() if k != variable}
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose_raw, env)
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose_raw, {**env, variable: ""})


# --- scaling ------------------------------------------------------------------------------------
def test_scaled_services_publish_no_host_port(compose):
    for name in SCALED:
        service = compose["services"][name]
        assert "ports" not in service, f"{name} publishes a host port: --scale would collide"
        assert "container_name" not in service, f"{name} has a fixed container name: --scale impossible"


def test_load_balancer_publishes_the_service_ports(compose):
    nginx = compose["services"]["nginx"]
    published = {}
    for port in nginx["ports"]:
        parts = str(port).split(":")
        published[int(parts[-2])] = int(parts[-1])
    assert published == {8080: 8080, 8081: 8081, 8082: 8082}
    publishers = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert publishers == {"nginx", "grafana", "jaeger", "prometheus"}
    # admin/analyst APIs and UIs are not bound to every interface unless asked for
    for name in publishers - {"nginx"}:
        for port in compose["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    for port in nginx["ports"]:
        if not str(port).endswith(":8080"):
            assert str(port).startswith("127.0.0.1:"), port


def test_nginx_config_resolves_replicas_dynamically_and_streams(compose):
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, re.M), "Docker's embedded DNS"
    assert re.search(r"^\s*proxy_buffering\s+off;", conf, re.M)
    assert re.search(r"^\s*proxy_request_buffering\s+off;", conf, re.M)
    assert re.search(r"^\s*proxy_http_version\s+1\.1;", conf, re.M)
    read_timeout = re.search(r"^\s*proxy_read_timeout\s+(\d+)s;", conf, re.M)
    assert read_timeout and int(read_timeout.group(1)) >= 300
    assert not re.search(r"^\s*upstream\s+\S+\s*\{", conf, re.M), "a static upstream block would pin the replicas resolved at start"
    upstreams = dict(re.findall(r"set \$\w+ http://([\w-]+):(\d+);", conf))
    assert upstreams == {name: str(port) for name, (_, _, port, _) in SERVICES.items()}
    listens = {int(p) for p in re.findall(r"^\s*listen\s+(\d+);", conf, re.M)}
    assert {8080, 8081, 8082} <= listens
    for service in upstreams:
        assert service in compose["services"]
    # nginx's own health endpoint, used by the compose healthcheck
    health_port = re.search(r"listen\s+(\d+);\s*\n\s*access_log off;", conf)
    assert health_port and health_port.group(1) in " ".join(compose["services"]["nginx"]["healthcheck"]["test"])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx binary not installed: syntax check with `nginx -t` skipped")
def test_nginx_config_syntax(tmp_path):
    out = subprocess.run(["nginx", "-t", "-q", "-c", str(DEPLOY / "nginx" / "nginx.conf"), "-e", str(tmp_path / "error.log"),
                          "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


# --- health and start order ---------------------------------------------------------------------
def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        if name in NO_HEALTHCHECK:
            assert not check or check.get("disable") is True, f"{name}: {NO_HEALTHCHECK[name]}"
            continue
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, name
    assert compose["services"]["migrate"].get("restart") == "no"


def test_depends_on_uses_conditions(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use the long form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services[target].get("healthcheck")
                assert check and not check.get("disable"), f"{name} waits for {target} to be healthy, it has no check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", target
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"


def test_services_wait_for_migrations_and_infrastructure(compose):
    services = compose["services"]
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["nats"]["condition"] == "service_healthy", name
        if "LLMGW_DATABASE_URL" in environment(services[name]):
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["postgres"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    command = " ".join(services["migrate"]["command"])
    assert "llmgw_keys migrate" in command and "llmgw_metering migrate" in command
    assert set(services["migrate"]["build"]["args"]["SERVICE"].split()) == {"key-service", "metering"}


# --- service settings ---------------------------------------------------------------------------
def test_service_images_built_from_the_one_dockerfile(compose):
    dockerfile_args = set(re.findall(r"^ARG\s+(\w+)", DOCKERFILE.read_text(), re.M))
    for name, (directory, module, port, port_env) in SERVICES.items():
        build = compose["services"][name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        args = build["args"]
        assert set(args) <= dockerfile_args
        assert (args["SERVICE"], args["MODULE"], int(args["PORT"]), args["PORT_ENV"]) == (directory, module, port, port_env)
        project = REPO / "services" / directory
        if (project / "pyproject.toml").exists():
            assert (project / "src" / module).is_dir(), f"services/{directory} has no package {module}"


def test_service_environment(compose):
    for name, (_, _, port, port_env) in SERVICES.items():
        env = environment(compose["services"][name])
        assert env["LLMGW_BIND_HOST"] == "0.0.0.0", name
        assert env["LLMGW_AUTO_MIGRATE"] == "0", name
        assert env["LLMGW_NATS_URL"] == "nats://nats:4222", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        assert env["OTEL_SERVICE_NAME"] == name
        assert env[port_env] == str(port), name
        healthcheck = " ".join(compose["services"][name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in healthcheck, name
        assert compose["services"][name].get("init") is True, f"{name}: SIGTERM forwarding / zombie reaping"
    secrets = {"LLMGW_ADMIN_TOKEN", "LLMGW_ENCRYPTION_KEY"}
    assert secrets <= set(environment(compose["services"]["key-service"]))
    assert not secrets & set(environment(compose["services"]["edge-proxy"])), "the proxy needs no admin secret"
    assert "LLMGW_ENCRYPTION_KEY" not in environment(compose["services"]["metering"])


def test_edge_proxy_spool_and_drain(compose):
    proxy = compose["services"]["edge-proxy"]
    env = environment(proxy)
    assert env["LLMGW_STATE_DIR"] == "/var/lib/llmgw"
    # an anonymous volume (container path only): one per replica, kept across container re-creation
    assert "/var/lib/llmgw" in proxy["volumes"]
    assert int(proxy["stop_grace_period"].rstrip("s")) >= 60
    assert env["LLMGW_PROXY_METRICS_PORT"] == "9090"


def test_infrastructure(compose):
    services = compose["services"]
    nats = services["nats"]
    assert "--jetstream" in nats["command"] or "-js" in nats["command"]
    assert "8222" in " ".join(nats["healthcheck"]["test"]) and "8222" in " ".join(nats["command"])
    assert any(str(v).startswith("nats-data:") for v in nats["volumes"])
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].startswith("16")
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    assert any(str(v).startswith("postgres-data:") for v in postgres["volumes"])
    assert {"nats-data", "postgres-data"} <= set(compose["volumes"])


def test_bind_mounts_exist_in_the_repository(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_discovers_every_replica(compose):
    config = yaml.safe_load((DEPLOY / "observability" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected_ports = {"edge-proxy": 9090, "key-service": 8081, "metering": 8082}
    for name, port in expected_ports.items():
        sd = jobs[name]["dns_sd_configs"][0]
        assert sd["names"] == [name] and sd["type"] == "A" and sd["port"] == port, name
        assert name in compose["services"]
