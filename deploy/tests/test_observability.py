"""The compose observability stack's configuration: OTel Collector, Prometheus, Grafana."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import DEPLOY

OBS = DEPLOY / "observability"


@pytest.fixture(scope="module")
def collector() -> dict:
    return yaml.safe_load((OBS / "otel-collector.yaml").read_text())


def test_collector_pipelines_reference_defined_components(collector):
    service = collector["service"]
    for extension in service.get("extensions", []):
        assert extension in collector["extensions"], extension
    for name, pipeline in service["pipelines"].items():
        for part, section in (("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")):
            for component in pipeline.get(part, []):
                assert component in collector[section], f"pipeline {name}: {component} not defined"
        assert pipeline["receivers"] and pipeline["exporters"], name
    # memory_limiter must come first in every pipeline that uses it
    for pipeline in service["pipelines"].values():
        if "memory_limiter" in pipeline.get("processors", []):
            assert pipeline["processors"][0] == "memory_limiter"


def test_collector_receives_otlp_and_sends_traces_to_jaeger(collector, compose_raw):
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318"), "the services export OTLP/HTTP to :4318"
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    traces = collector["service"]["pipelines"]["traces"]
    jaeger = [e for e in traces["exporters"] if e.startswith("otlp")]
    assert jaeger and collector["exporters"][jaeger[0]]["endpoint"] == "jaeger:4317"
    assert "jaeger" in compose_raw["services"] and "otel-collector" in compose_raw["services"]
    mounts = " ".join(compose_raw["services"]["otel-collector"]["volumes"])
    config_arg = " ".join(compose_raw["services"]["otel-collector"]["command"])
    target = re.search(r"--config=(\S+)", config_arg).group(1)
    assert f"otel-collector.yaml:{target}" in mounts


def test_prometheus_config_parses_and_scrapes_the_collector():
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "duplicate job names"
    collector = yaml.safe_load((OBS / "otel-collector.yaml").read_text())
    prom_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert f"otel-collector:{prom_port}" in jobs["otel-collector"]["static_configs"][0]["targets"]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((OBS / "grafana" / "dashboards" / "llmgw.json").read_text())


def test_grafana_provisioning_matches_compose_mounts(compose_raw):
    grafana = compose_raw["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    providers = yaml.safe_load((OBS / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert mounts["./deploy/observability/grafana/dashboards"] == path
    assert mounts["./deploy/observability/grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["./deploy/observability/grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"


def test_dashboard_uses_the_provisioned_prometheus(dashboard):
    sources = yaml.safe_load((OBS / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    prometheus = [d for d in sources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["url"] == "http://prometheus:9090"
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    metrics = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in by_uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in by_uid
            metrics |= set(re.findall(r"\b(llmgw_[a-z0-9_]+)", target["expr"]))
    assert metrics, "the dashboard queries llmgw metrics"
