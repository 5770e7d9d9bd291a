"""CanaryRelease objects as seen from outside the reconcile loop: `canaryctl` and the webhook.

Both only read releases and patch their spec or annotations; they never write
status, which belongs to the controller. Every change is a PATCH through the
apiserver, so it is subject to RBAC and recorded in the audit log under the
caller's identity. A patch that depends on what was read carries the
resourceVersion it was based on, so a concurrent change makes it fail (409)
instead of silently overwriting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from controller.api.spec import GROUP, KIND, PLURAL, VERSION

Release = dict[str, Any]


class ReleaseNotFound(LookupError):
    pass


class ReleaseChanged(Exception):
    """The object changed since it was read (HTTP 409): read it again and redecide."""


def command_value(verb: str, now: datetime | None = None) -> str:
    """`promote 2026-11-24T09:00:00.123456Z`: unique, so the engine handles it exactly once."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{verb} {when.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


class ReleaseClient:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def list_releases(self, namespace: str | None) -> list[Release]:
        """Releases in one namespace, or in every namespace when `namespace` is None."""
        if namespace is None:
            result = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            result = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items = cast(list[Release], cast(dict[str, Any], result).get("items", []))
        return sorted(items, key=lambda r: (r["metadata"]["namespace"], r["metadata"]["name"]))

    def get(self, namespace: str, name: str) -> Release:
        try:
            obj = self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise ReleaseNotFound(f"CanaryRelease {namespace}/{name} not found") from exc
            raise
        return cast(Release, obj)

    def patch(
        self, namespace: str, name: str, body: dict[str, Any], *, based_on: str | None = None
    ) -> Release:
        """A JSON merge patch; with `based_on` (a resourceVersion) it fails if the object moved."""
        if based_on is not None:
            body = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": based_on}}
        try:
            obj = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ReleaseNotFound(f"CanaryRelease {namespace}/{name} not found") from exc
            if exc.status == 409:
                raise ReleaseChanged(f"CanaryRelease {namespace}/{name} changed") from exc
            raise
        return cast(Release, obj)

    def send_command(self, namespace: str, name: str, verb: str) -> str:
        value = command_value(verb)
        self.patch(namespace, name, {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}})
        return value

    def set_tag(self, namespace: str, name: str, tag: str, *, based_on: str | None = None) -> None:
        self.patch(namespace, name, {"spec": {"release": {"tag": tag}}}, based_on=based_on)

    def events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        """The Events the controller recorded on this release, oldest first."""
        selector = f"involvedObject.kind={KIND},involvedObject.name={name}"
        result = self._core.list_namespaced_event(namespace, field_selector=selector)
        items = list(result.items)
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(items, key=lambda e: e.last_timestamp or e.event_time or epoch)
