"""The traffic routers' real CRDs in the local cluster: Gateway API and Istio.

They come out of the routers' own Go modules (sigs.k8s.io/gateway-api and
istio.io/api) through hack/fetch-router-crds.sh, which caches them by version
outside the repo, so tests run against the schemas users have, atomic lists
and all. Ingress needs nothing: it is built into Kubernetes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

REPO_ROOT = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = REPO_ROOT / "hack" / "fetch-router-crds.sh"

GATEWAY_API_CRDS = ("httproutes.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io")
ISTIO_CRDS = ("virtualservices.networking.istio.io", "destinationrules.networking.istio.io")


def resolve_router_crds_dir() -> Path:
    """``CANARY_ROUTER_CRDS`` if set, else the fetch script's (cached) output directory."""
    env = os.environ.get("CANARY_ROUTER_CRDS")
    if env:
        return Path(env)
    out = subprocess.run([str(FETCH_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{FETCH_SCRIPT} printed no directory")
    return Path(lines[-1])


def _crd_documents(directory: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                found[doc["metadata"]["name"]] = doc
    return found


def _create_or_replace(ext: client.ApiextensionsV1Api, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body = {**body, "metadata": {**body["metadata"]}}
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)


def _wait_established(ext: client.ApiextensionsV1Api, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(name)
        conditions = (crd.status and crd.status.conditions) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established")


def install_router_crds(
    api: client.ApiClient,
    directory: Path,
    names: Iterable[str] = (*GATEWAY_API_CRDS, *ISTIO_CRDS),
    timeout: float = 60.0,
) -> list[str]:
    """Install the named CRDs from `directory` (as `kubectl apply` would) and wait for them."""
    documents = _crd_documents(directory)
    wanted = list(names)
    missing = [n for n in wanted if n not in documents]
    if missing:
        raise LookupError(f"CRDs {missing} not found under {directory}")
    ext = client.ApiextensionsV1Api(api)
    for name in wanted:
        _create_or_replace(ext, documents[name])
    deadline = time.monotonic() + timeout
    for name in wanted:
        _wait_established(ext, name, deadline)
    return wanted
