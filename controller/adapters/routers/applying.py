"""Server-side apply of route objects under the controller's own field manager.

Why server-side apply: the apiserver records which manager set every field,
so fields a GitOps tool or a person wrote stay theirs; the controller sends
only the fields it steers, and a field someone else owns comes back as a 409
conflict naming that manager. The controller never forces: it reports the
conflict (RouteConflict) and leaves the route as it is.

A read-modify-apply (the route's rules are one atomic list in both the
Gateway API and Istio schemas) carries the resourceVersion it read, so a
change in between fails the apply (RouteChanged) instead of being overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.kubernetes import _call, api_message
from controller.adapters.routers.protocol import RouteChanged, RouteConflict

FIELD_MANAGER = "canary-controller"
APPLY = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
INGRESS = Kind("networking.k8s.io", "v1", "ingresses", "Ingress")
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "virtualservices", "VirtualService")
DESTINATION_RULE = Kind("networking.istio.io", "v1", "destinationrules", "DestinationRule")
SERVICE = Kind("", "v1", "services", "Service")
DEPLOYMENT = Kind("apps", "v1", "deployments", "Deployment")


def describe_conflict(kind: Kind, name: str, exc: ApiException) -> RouteConflict | None:
    """The 409 of a field-manager conflict as a readable RouteConflict; None for other 409s."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return None
    causes = (body.get("details") or {}).get("causes") or []
    owned = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if not owned:
        return None
    managers: list[str] = []
    fields: list[str] = []
    for cause in owned:
        manager = str(cause.get("message", "")).split('"')
        if len(manager) >= 2 and manager[1] not in managers:
            managers.append(manager[1])
        field = str(cause.get("field", "?"))
        if field not in fields:
            fields.append(field)
    who = ", ".join(f'"{m}"' for m in managers) or "another field manager"
    message = (
        f"{kind.kind} {name}: {', '.join(fields)} owned by {who}; the controller does not "
        f"force it. Hand the field to field manager {FIELD_MANAGER!r} (see docs/traffic.md)"
    )
    return RouteConflict(message, tuple(managers))


class Objects:
    """Read and server-side apply namespaced objects of the kinds the routers use."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            if kind is SERVICE:
                obj = _call(self._core.read_namespaced_service, name, namespace)
                raw = self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
                return cast(dict[str, Any], raw)
            found = _call(
                self._custom.get_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    def apply(self, kind: Kind, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply `body` as FIELD_MANAGER, never forced.

        Raises RouteConflict when another manager owns a field in `body`, and
        RouteChanged when a resourceVersion in `body` is no longer current.
        """
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": False,
            "_content_type": APPLY,
        }
        if dry_run:
            options["dry_run"] = "All"
        try:
            if kind is SERVICE:
                obj = _call(self._core.patch_namespaced_service, name, namespace, body, **options)
                raw = self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
                return cast(dict[str, Any], raw)
            applied = _call(
                self._custom.patch_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
                body,
                **options,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            conflict = describe_conflict(kind, name, exc)
            if conflict is not None:
                raise conflict from exc
            raise RouteChanged(f"{kind.kind} {name} changed since it was read") from exc
        if applied is None:  # the client drops the body of a 201 (an apply that created)
            return self.get(kind, namespace, name) or {}
        return cast(dict[str, Any], applied)

    def blocked(self, kind: Kind, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """A dry-run apply of `body`: (the conflict it would meet, why the apiserver
        refuses it as invalid); (None, None) when it would apply."""
        try:
            self.apply(kind, body, dry_run=True)
        except RouteConflict as conflict:
            return str(conflict), None
        except RouteChanged:
            return None, None  # read again next time
        except ApiException as exc:
            if exc.status not in (400, 422):
                raise
            return None, refusal(kind, body["metadata"]["name"], exc)
        return None, None


def refusal(kind: Kind, name: str, exc: ApiException) -> str:
    """The apiserver's reason for refusing what the controller would write."""
    message = api_message(exc)
    return f"{kind.kind} {name}: the apiserver refuses what the controller would write: {message}"


def apply_body(
    kind: Kind, namespace: str, name: str, resource_version: str | None, **fields: Any
) -> dict[str, Any]:
    """An apply configuration holding only the fields the controller steers."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta, **fields}


def owner_reference(release: dict[str, Any]) -> dict[str, Any]:
    """Objects the controller creates go away with their CanaryRelease."""
    meta = release["metadata"]
    return {
        "apiVersion": release.get("apiVersion", "canary.dev/v1alpha1"),
        "kind": release.get("kind", "CanaryRelease"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
