"""Deployment settings that security and graceful shutdown depend on (compose and Kubernetes):

- the proxy's shutdown grace fits in the time the orchestrator gives it (and uses most of it);
- the brute-force limit sees real clients behind nginx / the ingress (LLMGW_TRUSTED_PROXIES, and a
  load balancer that overwrites X-Forwarded-For so it cannot be spoofed);
- pass-through of other /v1/* paths is narrowed in production (LLMGW_PASSTHROUGH);
- Grafana has no anonymous access and no default admin password.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from conftest import DEPLOY
from test_compose import TEST_ENV, MissingVariable, environment, interpolate

#: seconds between the end of the grace period and the kill that we insist on keeping free
MIN_MARGIN = 10
#: a grace period shorter than what the orchestrator allows by more than this wastes the window
MAX_SLACK = 30


def _find(objects, kind, name):
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _container_env(objects, workload_kind, workload, container_name) -> dict[str, str]:
    """The container's environment as the pod sees it: ConfigMaps from envFrom, then env."""
    spec = _find(objects, workload_kind, workload)["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == container_name]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def _networks(value: str) -> list:
    nets = [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
    assert nets, "no network listed"
    return nets


def _passthrough_prefixes(value: str) -> list[str] | None:
    """None = all; [] = none; else the prefixes (checked like the proxy checks them)."""
    value = value.strip()
    if value.lower() == "all":
        return None
    if value.lower() in ("none", ""):
        return []
    prefixes = [p.strip() for p in value.split(",") if p.strip()]
    for prefix in prefixes:
        assert prefix.startswith("/v1/") and len(prefix) > 4 and not re.search(r"[?#%\\]", prefix), prefix
    return prefixes


# --- Kubernetes ---------------------------------------------------------------------------------
@pytest.fixture(params=["base", "production"])
def rendered(request, base_objects, production_objects):
    return base_objects if request.param == "base" else production_objects


def _grace_budget(spec: dict, container: dict, env: dict) -> tuple[int, float, float, float]:
    period = spec["terminationGracePeriodSeconds"]
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = float(command[1]) if command[:1] == ["sleep"] else 0.0
    assert "LLMGW_SHUTDOWN_GRACE_SECONDS" in env, "set it explicitly (the 90 s default does not match the pod's period)"
    grace = float(env["LLMGW_SHUTDOWN_GRACE_SECONDS"])
    flush = float(env.get("LLMGW_SHUTDOWN_FLUSH_TIMEOUT", "10"))
    return period, pre_stop, grace, flush


def test_edge_proxy_shutdown_grace_fits_the_termination_period(rendered):
    spec = _find(rendered, "StatefulSet", "edge-proxy")["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "edge-proxy"]
    period, pre_stop, grace, flush = _grace_budget(spec, container, _container_env(rendered, "StatefulSet", "edge-proxy", "edge-proxy"))
    # SIGTERM comes after the preStop sleep; then in-flight requests get `grace`, then the usage
    # queue is flushed for up to `flush` — all before the kubelet's SIGKILL
    assert pre_stop + grace + flush + MIN_MARGIN <= period, (period, pre_stop, grace, flush)
    # and long streams are not cut early while the pod could still wait
    assert grace >= period - pre_stop - flush - MAX_SLACK, (period, pre_stop, grace, flush)


def test_grace_check_can_fail(base_objects):
    spec = _find(base_objects, "StatefulSet", "edge-proxy")["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "edge-proxy"]
    env = _container_env(base_objects, "StatefulSet", "edge-proxy", "edge-proxy")
    period, pre_stop, _, flush = _grace_budget(spec, container, env)
    for wrong in (90.0, period - pre_stop):  # the old default; no room for the flush
        assert not (pre_stop + wrong + flush + MIN_MARGIN <= period and wrong >= period - pre_stop - flush - MAX_SLACK)


def test_trusted_proxies_and_passthrough_in_the_configmap(base_objects, production_objects):
    for objects in (base_objects, production_objects):
        env = _container_env(objects, "StatefulSet", "edge-proxy", "edge-proxy")
        for net in _networks(env["LLMGW_TRUSTED_PROXIES"]):
            assert net.is_private, f"trusting a public range lets anyone there pick its client address: {net}"
    base = _container_env(base_objects, "StatefulSet", "edge-proxy", "edge-proxy")
    assert _passthrough_prefixes(base["LLMGW_PASSTHROUGH"]) is None  # the contract's default
    production = _container_env(production_objects, "StatefulSet", "edge-proxy", "edge-proxy")
    prefixes = _passthrough_prefixes(production["LLMGW_PASSTHROUGH"])
    assert prefixes is not None, "production forwards every /v1/* path to the shared provider account"
    for dangerous in ("/v1/files", "/v1/batches", "/v1/fine_tuning", "/v1/uploads", "/v1/vector_stores", "/v1/assistants"):
        assert not any(dangerous.startswith(p.rstrip("/")) for p in prefixes), dangerous


# --- Compose ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose(compose_raw) -> dict:
    return interpolate(compose_raw, TEST_ENV)


def test_compose_edge_proxy_grace_fits_stop_grace_period(compose):
    proxy = compose["services"]["edge-proxy"]
    env = environment(proxy)
    stop = int(str(proxy["stop_grace_period"]).rstrip("s"))
    grace = float(env["LLMGW_SHUTDOWN_GRACE_SECONDS"])
    flush = float(env.get("LLMGW_SHUTDOWN_FLUSH_TIMEOUT", "10"))
    assert grace + flush + MIN_MARGIN <= stop, (stop, grace, flush)
    assert grace >= stop - flush - MAX_SLACK, (stop, grace, flush)
    # nginx must keep open streams at least as long as the proxy does
    assert int(str(compose["services"]["nginx"]["stop_grace_period"]).rstrip("s")) >= stop


def test_compose_proxy_trusts_nginx_and_nginx_cannot_be_spoofed(compose):
    env = environment(compose["services"]["edge-proxy"])
    nets = _networks(env["LLMGW_TRUSTED_PROXIES"])
    assert all(net.is_private for net in nets)
    # Docker's default address pools (the project network nginx shares with the proxy)
    assert any(ipaddress.ip_address("172.18.0.5") in net for net in nets)
    assert _passthrough_prefixes(env["LLMGW_PASSTHROUGH"]) is None  # overridable from .env
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    directives = dict(re.findall(r"^\s*proxy_set_header\s+(X-Forwarded-For|X-Real-IP)\s+(\S+);", conf, re.M | re.I))
    # nginx is the outermost hop: it *replaces* the client's header with the address it saw
    assert directives == {"X-Real-IP": "$remote_addr", "X-Forwarded-For": "$remote_addr"}, directives


def test_compose_grafana_requires_a_password_and_has_no_anonymous_access(compose_raw, compose):
    env = environment(compose["services"]["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == TEST_ENV["GRAFANA_ADMIN_PASSWORD"]
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"
    without = {k: v for k, v in TEST_ENV.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    for missing in (without, {**without, "GRAFANA_ADMIN_PASSWORD": ""}):
        with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
            interpolate(compose_raw, missing)
