"""Pytest plugin: the traffic routers' real CRDs (Gateway API, Istio) in the session cluster.

Fixtures:
    router_crds (session)  installs HTTPRoute, Gateway, VirtualService and
                           DestinationRule from the routers' Go modules (see
                           devenv/routers.py); their names.
"""

from __future__ import annotations

import pytest
from kubernetes import config as kube_config

from devenv.cluster import LocalCluster
from devenv.routers import install_router_crds, resolve_router_crds_dir


@pytest.fixture(scope="session")
def router_crds(cluster: LocalCluster) -> list[str]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        return install_router_crds(api, resolve_router_crds_dir())
    finally:
        api.close()
