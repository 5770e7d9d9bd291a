"""Routes, Services and the stable Deployment for the traffic-routing tests.

Objects are written the way their real writers write them: with server-side
apply under a named field manager ("gitops" plays Argo CD or Flux, "ops" a
person), so the tests see the same ownership the controller meets in a
cluster.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.routers.applying import (
    DESTINATION_RULE,
    FIELD_MANAGER,
    HTTP_ROUTE,
    INGRESS,
    VIRTUAL_SERVICE,
    Kind,
)
from controller.api.spec import GROUP, PLURAL, VERSION

TRACK = "canary.dev/track"
APPLY = "application/apply-patch+yaml"


def stable_deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    """A Deployment whose pods say they are the stable track, as docs/traffic.md asks."""
    labels = {"app": name, TRACK: "stable"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def stable_service(name: str, *, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector if selector is not None else {"app": name, TRACK: "stable"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def http_route(name: str, service: str, *, rules: bool = True) -> dict[str, Any]:
    """The route as a GitOps repository would hold it."""
    spec: dict[str, Any] = {
        "parentRefs": [{"name": "public"}],
        "hostnames": [f"{name}.example.com"],
    }
    if rules:
        spec["rules"] = [
            {
                "name": "api",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "X-Via", "value": "gw"}]},
                    }
                ],
                "backendRefs": [{"name": service, "port": 80}],
            },
            {
                "name": "static",
                "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                "backendRefs": [{"name": "static-files", "port": 80}],
            },
        ]
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": {"name": name, "labels": {"team": "payments"}},
        "spec": spec,
    }


def ingress(name: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": INGRESS.api_version,
        "kind": INGRESS.kind,
        "metadata": {"name": name, "annotations": {"owner": "gitops"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": f"{name}.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": 80}}},
                            },
                            {
                                "path": "/static",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "static-files", "port": {"number": 80}}
                                },
                            },
                        ]
                    },
                }
            ],
        },
    }


def virtual_service(name: str, service: str, *, subsets: bool = False) -> dict[str, Any]:
    stable: dict[str, Any] = {"host": service}
    if subsets:
        stable["subset"] = "stable"
    return {
        "apiVersion": VIRTUAL_SERVICE.api_version,
        "kind": VIRTUAL_SERVICE.kind,
        "metadata": {"name": name},
        "spec": {
            "hosts": [f"{name}.example.com"],
            "gateways": ["public"],
            "http": [
                {
                    "name": "static",
                    "match": [{"uri": {"prefix": "/static"}}],
                    "route": [{"destination": {"host": "static-files"}}],
                },
                {
                    "name": "main",
                    "timeout": "5s",
                    "route": [{"destination": stable}],
                },
            ],
        },
    }


def destination_rule(name: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": DESTINATION_RULE.api_version,
        "kind": DESTINATION_RULE.kind,
        "metadata": {"name": name},
        "spec": {
            "host": service,
            "subsets": [
                {"name": "stable", "labels": {TRACK: "stable"}},
                {"name": "canary", "labels": {TRACK: "canary"}},
            ],
        },
    }


class Cluster:
    """Server-side apply and reads for one namespace, as any field manager."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def apply(
        self, kind: Kind, body: dict[str, Any], manager: str, *, force: bool = False
    ) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        name = body["metadata"]["name"]
        if kind.group == "":
            obj = self.core.patch_namespaced_service(
                name,
                self.namespace,
                body,
                field_manager=manager,
                force=force,
                _content_type=APPLY,
            )
            return dict(self.api.sanitize_for_serialization(obj))
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            self.namespace,
            kind.plural,
            name,
            body,
            field_manager=manager,
            force=force,
            _content_type=APPLY,
        )
        return result

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def write_status(self, kind: Kind, name: str, status: dict[str, Any]) -> None:
        """Report on the route as its gateway or mesh controller does (the status subresource)."""
        self.custom.patch_namespaced_custom_object_status(
            kind.group, kind.version, self.namespace, kind.plural, name, {"status": status}
        )

    def hand_over_rules(self, kind: Kind, name: str, field: str, gitops: dict[str, Any]) -> None:
        """The documented handover of an atomic list to the controller's field manager.

        The controller co-owns the live value (an apply of the same value never
        conflicts), then GitOps stops managing it; the value stays, now the
        controller's alone.
        """
        live = self.get(kind, name)
        assert live is not None
        ours = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"name": name},
            "spec": {field: live["spec"][field]},
        }
        self.apply(kind, ours, FIELD_MANAGER)
        without = {**gitops, "spec": {k: v for k, v in gitops["spec"].items() if k != field}}
        self.apply(kind, without, "gitops")

    def managers_of(self, obj: dict[str, Any], field: str) -> set[str]:
        """Managers whose managedFields mention `field` (e.g. "f:rules")."""
        return {
            entry["manager"]
            for entry in obj["metadata"].get("managedFields") or []
            if field in str(entry.get("fieldsV1"))
        }

    def create_release(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def create_deployment(self, name: str, replicas: int, image: str) -> None:
        self.apps.create_namespaced_deployment(
            self.namespace, stable_deployment(name, replicas, image)
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dep = self.apps.read_namespaced_deployment(name, self.namespace)
            if (dep.status.available_replicas or 0) >= replicas:
                return
            time.sleep(0.25)
        raise AssertionError(f"deployment {name} not Available")
