"""Reaching the cluster the way kubectl does: KUBECONFIG, --kubeconfig, --context, -n.

The namespace defaults to the one set in the kubeconfig context (as kubectl's
does), then to the pod's own namespace in-cluster, then to `default`.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from kubernetes import client, config

_IN_CLUSTER_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Connection:
    api: client.ApiClient
    namespace: str


def _kubeconfig_path(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = pathlib.Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    path = _kubeconfig_path(kubeconfig)
    if path is None:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
        default = (
            _IN_CLUSTER_NAMESPACE.read_text().strip()
            if _IN_CLUSTER_NAMESPACE.exists()
            else "default"
        )
        return Connection(api, namespace or default)
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=path, context=context, persist_config=False
    )
    if namespace:
        return Connection(api, namespace)
    contexts, current = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    ctx = (chosen or {}).get("context") or {}
    return Connection(api, str(ctx.get("namespace") or "default"))
