"""Install the checked-in CRD into a cluster, as `kubectl apply` would, and wait for it."""

from __future__ import annotations

import time

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.api.crd import CRD_PATHS


def install_crd(api: client.ApiClient, timeout: float = 30.0) -> str:
    """Create or replace the CRD, then wait until the apiserver serves it (Established)."""
    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD_PATHS[0].read_text())
    name: str = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(name)
        conditions = (crd.status and crd.status.conditions) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return name
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established after {timeout}s")
