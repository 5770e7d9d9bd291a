"""Which watched objects exist right now, read as metadata only.

kopf lists a kind again when its watch cannot resume (410 Gone, an apiserver
restart), but unlike client-go's reflector it does not drop from its indices
what that listing lacks: an object deleted while the watch was down stays
indexed for good. This listing is what `runtime/phantoms.py` checks the
indices against. Metadata only, in pages, so that even thousands of pods cost
a few small responses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from kubernetes import client

from controller.adapters.kubernetes import RELEASE_LABEL, TRACK_LABEL, _call
from controller.api.spec import GROUP, PLURAL, VERSION

Kind = Literal["canaryreleases", "deployments", "pods", "horizontalpodautoscalers"]
KINDS: tuple[Kind, ...] = ("canaryreleases", "deployments", "pods", "horizontalpodautoscalers")
#: Only the pods of a release's tracks are watched (and indexed).
POD_SELECTOR = f"{RELEASE_LABEL},{TRACK_LABEL}"
_METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
PAGE = 500
#: The client API and the singular in its method names (list_namespaced_<singular>, ...).
_BUILT_IN: dict[str, tuple[Callable[[client.ApiClient], Any], str]] = {
    "deployments": (client.AppsV1Api, "deployment"),
    "pods": (client.CoreV1Api, "pod"),
    "horizontalpodautoscalers": (client.AutoscalingV2Api, "horizontal_pod_autoscaler"),
}


class Listing(NamedTuple):
    """The uids that exist, and the oldest resourceVersion the lists were read at."""

    uids: frozenset[str]
    version: int | None
    """None when a list gave no version that compares as a number."""

    def lacks(self, uid: str, version: str) -> bool:
        """An object read before this listing that the listing does not have: deleted.

        One changed since the listing began may be a new object the listing
        could not have seen, so it is never taken as gone; nor is anything
        without a uid or a numeric version.
        """
        if not uid or uid in self.uids or self.version is None:
            return False
        try:
            return int(version) <= self.version
        except ValueError:
            return False


def list_live(api_client: client.ApiClient, kind: Kind, namespaces: Sequence[str]) -> Listing:
    """Every object of `kind` in the watched namespaces (all of them when none are named)."""
    uids: set[str] = set()
    versions: list[int | None] = []
    scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
    for namespace in scopes:
        token: str | None = None
        first = True
        while first or token:
            page = _page(api_client, kind, namespace, token)
            meta = page.get("metadata") or {}
            if first:  # every page of one list is read at the first page's version
                versions.append(_number(meta.get("resourceVersion")))
                first = False
            uids.update(
                str(item["metadata"]["uid"])
                for item in page.get("items") or []
                if (item.get("metadata") or {}).get("uid")
            )
            token = meta.get("continue") or None
    known = [v for v in versions if v is not None]
    version = min(known) if known and len(known) == len(versions) else None
    return Listing(frozenset(uids), version)


def _page(
    api_client: client.ApiClient, kind: Kind, namespace: str | None, token: str | None
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "limit": PAGE,
        "_preload_content": False,
        "_headers": _METADATA_ONLY,
    }
    if token:
        options["_continue"] = token
    if kind == "pods":
        options["label_selector"] = POD_SELECTOR
    lister: Callable[..., Any]
    args: tuple[Any, ...]
    if kind == "canaryreleases":
        custom = client.CustomObjectsApi(api_client)
        if namespace is None:
            lister, args = custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        else:
            lister, args = custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
    else:
        api_class, singular = _BUILT_IN[kind]
        api = api_class(api_client)
        if namespace is None:
            lister, args = getattr(api, f"list_{singular}_for_all_namespaces"), ()
        else:
            lister, args = getattr(api, f"list_namespaced_{singular}"), (namespace,)
    response = _call(lister, *args, **options)
    return dict(json.loads(response.data))


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
