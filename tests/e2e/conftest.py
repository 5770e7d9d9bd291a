"""End-to-end fixtures: the CRD installed in the real apiserver, and the controller as a process."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.api.crd import CRD_PATHS
from devenv.cluster import LocalCluster
from devenv.controller import ControllerProcess
from tests.e2e.helpers import Releases, wait_for

ControllerFactory = Callable[..., ControllerProcess]


def install_crd(api: client.ApiClient) -> None:
    """Create or replace the checked-in CRD, then wait until it is Established."""
    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD_PATHS[0].read_text())
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait_for(established, 30, "CRD Established")


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> str:
    from kubernetes import config as kube_config

    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        install_crd(api)
    finally:
        api.close()
    return "canaryreleases.canary.dev"


@pytest.fixture
def releases(k8s: client.ApiClient, namespace: str, crd: str) -> Releases:
    return Releases(k8s, namespace)


@pytest.fixture
def controller(
    cluster: LocalCluster, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> Iterator[ControllerFactory]:
    """Start controller processes watching the given namespaces; all stopped after the test."""
    started: list[ControllerProcess] = []

    def start(*namespaces: str, **env: str) -> ControllerProcess:
        log = tmp_path / f"controller-{len(started)}.log"
        proc = ControllerProcess(cluster.kubeconfig, log, namespaces, env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in started:
            print(f"--- {proc.log_path} ---\n{proc.log_tail(80)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
