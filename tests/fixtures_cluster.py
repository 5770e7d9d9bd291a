"""pytest plugin: a real local Kubernetes control plane (see devenv/cluster.py).

Fixtures:
    cluster   (session)  a LocalCluster; started in a tmp dir and stopped at
                         session end, or, when CANARY_KUBECONFIG is set, that
                         already-running cluster (e.g. from `make cluster-up`),
                         which is left running.
    k8s       (function) a kubernetes.client.ApiClient for it; a fresh one per
                         test so no test can leak configuration into another,
                         and the global kubernetes.config is never touched.
    namespace (function) a new namespace named after the test, with its
                         `default` ServiceAccount in place; deleted afterwards
                         without waiting (namespace deletion takes seconds).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster, resolve_bin_dir

#: How long a new namespace may take to get its `default` ServiceAccount;
#: pods are rejected by the ServiceAccount admission plugin until it exists.
_SA_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The control plane for the whole session."""
    existing = os.environ.get("CANARY_KUBECONFIG")
    if existing:
        yield LocalCluster.existing(existing, resolve_bin_dir())
        return
    local = LocalCluster.start(tmp_path_factory.mktemp("cluster"), resolve_bin_dir())
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def k8s(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    """An API client bound to the session cluster only (no global config)."""
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


def namespace_name(test_name: str) -> str:
    """A valid, unique DNS-1123 label derived from the test name (<= 63 chars)."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
    suffix = uuid.uuid4().hex[:6]
    slug = slug.removeprefix("test-")[: 63 - len(suffix) - 3].strip("-")
    return f"t-{slug}-{suffix}" if slug else f"t-{suffix}"


@pytest.fixture
def namespace(k8s: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, ready for pods."""
    core = client.CoreV1Api(k8s)
    name = namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"canary.dev/test": "true"})
        )
    )
    try:
        _wait_for_default_service_account(core, name)
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise


def _wait_for_default_service_account(core: client.CoreV1Api, namespace: str) -> None:
    deadline = time.monotonic() + _SA_TIMEOUT
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say which cluster the session will use, so a reused one is never a surprise."""
    existing = os.environ.get("CANARY_KUBECONFIG")
    if existing:
        return f"kubernetes: reusing cluster from CANARY_KUBECONFIG={Path(existing)}"
    return None
