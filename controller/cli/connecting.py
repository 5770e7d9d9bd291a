"""Reaching the cluster the way kubectl does: KUBECONFIG, --kubeconfig, --context, -n.

The namespace defaults to the one set in the kubeconfig context (as kubectl's
does), then to the pod's own namespace in-cluster, then to `default`. With
several files in KUBECONFIG the first `current-context` wins, as in kubectl;
the Python client would take the last, and `canaryctl abort` would act on
another cluster than the one `kubectl get` just showed. Every request has a
timeout, so a silent network is an error in seconds, not a hang.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from controller.runtime.clients import CountingApiClient

RETRIES = 1  # one more try on a dropped connection; a person is waiting
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
        api = CountingApiClient(limiter=None, retries=RETRIES)
        default = (
            _IN_CLUSTER_NAMESPACE.read_text().strip()
            if _IN_CLUSTER_NAMESPACE.exists()
            else "default"
        )
        return Connection(api, namespace or default)
    context = context or _first_current_context(path)
    configuration = client.Configuration()
    try:
        # The client lets a file that is not YAML, not a mapping, or a directory
        # escape as yaml/TypeError/OSError: that is "no usable kubeconfig" too.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, current = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except (yaml.YAMLError, OSError, TypeError, AttributeError) as exc:
        reason = " ".join(str(exc).split())  # a YAML error spans several lines
        raise ConfigException(f"cannot read {path}: {reason}") from exc
    api = CountingApiClient(limiter=None, configuration=configuration, retries=RETRIES)
    if namespace:
        return Connection(api, namespace)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    ctx = (chosen or {}).get("context") or {}
    return Connection(api, str(ctx.get("namespace") or "default"))


def _first_current_context(path: str) -> str | None:
    for name in path.split(os.pathsep):
        try:
            document = yaml.safe_load(pathlib.Path(name).expanduser().read_text())
        except (OSError, yaml.YAMLError):
            continue  # kubectl skips a file it cannot read, too
        current = document.get("current-context") if isinstance(document, dict) else None
        if current:
            return str(current)
    return None
