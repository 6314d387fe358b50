"""Shared fixtures for the deploy tests: repository paths, rendered kustomizations, the compose file.

These tests need no Docker engine and no cluster. They do need `kubectl` (with kustomize v5) on
PATH: without it they fail, loudly, rather than skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

#: compose service / k8s workload -> (services/ dir, python module, port, port env var)
SERVICES = {
    "edge-proxy": ("edge-proxy", "llmgw_proxy", 8080, "LLMGW_PROXY_PORT"),
    "key-service": ("key-service", "llmgw_keys", 8081, "LLMGW_KEYS_PORT"),
    "metering": ("metering", "llmgw_metering", 8082, "LLMGW_METERING_PORT"),
}


def find_kubectl() -> str:
    candidates = [Path(sys.executable).parent / "kubectl", Path("/usr/bin/kubectl")]
    path = shutil.which("kubectl") or next((str(c) for c in candidates if os.access(c, os.X_OK)), None)
    if path is None:
        pytest.fail(
            "kubectl not found (PATH, the virtualenv's bin/, /usr/bin): the Kubernetes manifests cannot be rendered. "
            "Install kubectl >= 1.27 (it bundles kustomize v5), e.g. the `kubectl` Debian/Ubuntu package from "
            "the Kubernetes apt repository, then rerun.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_kubectl()
    out = subprocess.run([path, "version", "--client"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    match = re.search(r"Kustomize Version:\s*v(\d+)\.", out.stdout)
    assert match, f"`kubectl version --client` shows no bundled kustomize:\n{out.stdout}"
    assert int(match.group(1)) >= 5, f"kustomize v5 or newer needed, got:\n{out.stdout}"
    return path


def render(kubectl: str, directory: Path) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert docs, f"{directory} rendered nothing"
    return docs


@pytest.fixture(scope="session")
def base_objects(kubectl) -> list[dict]:
    return render(kubectl, K8S / "base")


@pytest.fixture(scope="session")
def production_objects(kubectl) -> list[dict]:
    return render(kubectl, K8S / "overlays" / "production")


@pytest.fixture(scope="session")
def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())
