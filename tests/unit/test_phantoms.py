"""The sweep for deletions a watch missed: when an indexed object counts as gone, and when it runs.

The sweep against real listings is in tests/integration/test_missed_deletions.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from kubernetes import client

from controller.adapters.kubernetes_listing import Kind, Listing
from controller.runtime import phantoms
from controller.runtime.caches import CachedCluster, ReleaseStore
from controller.runtime.phantoms import Sweeper

pytestmark = pytest.mark.unit


def test_an_object_counts_as_gone_only_if_the_listing_is_newer_and_lacks_it() -> None:
    listing = Listing(frozenset({"a"}), version=100)
    assert listing.lacks("b", "99")
    assert listing.lacks("b", "100")
    assert not listing.lacks("a", "50")  # listed
    assert not listing.lacks("b", "101")  # changed after the listing: may be new to it
    assert not listing.lacks("", "1")  # no uid: nothing to go by
    assert not listing.lacks("b", "not-a-number")
    assert not Listing(frozenset(), version=None).lacks("b", "1")


def _body(name: str, uid: str, version: str) -> dict[str, object]:
    meta = {"namespace": "shop", "name": name, "uid": uid, "resourceVersion": version}
    return {"metadata": meta, "spec": {"targetRef": {"name": name}}}


def test_a_release_recreated_under_its_name_is_not_forgotten_for_the_old_one() -> None:
    store = ReleaseStore()
    store.put(_body("payments", "old", "5"))
    store.put(_body("payments", "new", "9"))  # deleted and created again while unwatched
    assert not store.delete_if(("shop", "payments"), "old")
    assert store.targeting("shop", "payments") == [("shop", "payments")]
    assert store.delete_if(("shop", "payments"), "new")
    assert store.keys() == [] and store.targeting("shop", "payments") == []


class _Lister:
    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[Kind] = []
        self.fail_first = fail_first
        self.called = threading.Event()

    def __call__(self, kind: Kind, namespaces: Sequence[str]) -> Listing:
        self.calls.append(kind)
        self.called.set()
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("apiserver unreachable")
        return Listing(frozenset(), version=1)


def _sweeper(lister: _Lister) -> Sweeper:
    cluster = CachedCluster(client.ApiClient(), ReleaseStore())
    cluster.deployments, cluster.pods, cluster.autoscalers = {}, {}, {}
    return Sweeper(
        cluster, lister, ["shop"], interval_s=3600, wake=lambda _: None, forget=lambda *_: None
    )


def test_a_watch_seen_listing_again_brings_the_sweep_forward_and_a_failure_does_not_stop_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(phantoms, "SETTLE_S", 0.05)
    lister = _Lister(fail_first=True)
    sweeper = _sweeper(lister)
    sweeper.start()
    try:
        time.sleep(0.3)
        assert lister.calls == []  # the interval is an hour away
        sweeper.soon()
        assert lister.called.wait(5)
        lister.called.clear()
        sweeper.soon()  # the first sweep failed at its first listing; the next one runs
        assert lister.called.wait(5)
        deadline = time.monotonic() + 5
        while len(lister.calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lister.calls == ["canaryreleases", *phantoms.KINDS]
    finally:
        sweeper.stop()


def test_nothing_is_listed_before_the_watches_have_filled_the_indices() -> None:
    lister = _Lister()
    sweeper = Sweeper(
        CachedCluster(client.ApiClient(), ReleaseStore()),
        lister,
        [],
        interval_s=3600,
        wake=lambda _: None,
        forget=lambda *_: None,
    )
    assert sweeper.sweep() == set()
    assert lister.calls == []
