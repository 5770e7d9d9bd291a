"""Pytest plugin: the CRD installed in the real apiserver, and the controller as a process."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from devenv.cluster import LocalCluster
from devenv.controller import ControllerProcess
from devenv.install import install_crd
from tests.e2e.helpers import Releases

ControllerFactory = Callable[..., ControllerProcess]


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
