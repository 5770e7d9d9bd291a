"""Objects deleted while a watch was down, which kopf's indices still hold.

When a watch cannot resume (410 Gone after an apiserver restart or upgrade),
kopf lists the kind again, but unlike client-go's reflector it does not drop
what the new listing lacks. A canary pod that was crash-looping when it was
deleted in that gap would then roll back its release's next canary of that
image (a `retry`, say), a deleted Deployment would look present, and a
CanaryRelease deleted unseen would keep its metrics series and its alerts
firing.

So every `CANARY_RESYNC_INTERVAL`, and a few seconds after a watch is seen
listing again, each watched kind is listed (metadata only) and what the
indices hold of objects that listing lacks is set aside: reads skip it
(`CachedCluster.gone`), the releases of its namespace decide again, and a
CanaryRelease is forgotten as if its deletion had been seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog

from controller.adapters.kubernetes_listing import KINDS, Kind, Listing
from controller.runtime.caches import CachedCluster, ReleaseKey
from controller.runtime.metrics import MISSED_DELETIONS

log = structlog.get_logger("controller.phantoms")
#: After a watch is seen listing, wait this long before checking: long enough
#: for its listing to be read through, short enough to act before the next pass.
SETTLE_S = 5.0

Lister = Callable[[Kind, Sequence[str]], Listing]


class Sweeper:
    def __init__(
        self,
        cluster: CachedCluster,
        lister: Lister,
        namespaces: Sequence[str],
        *,
        interval_s: float,
        wake: Callable[[ReleaseKey], None],
        forget: Callable[[ReleaseKey, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster, self._lister, self._namespaces = cluster, lister, tuple(namespaces)
        self._interval_s, self._wake, self._forget, self._clock = interval_s, wake, forget, clock
        self._lock = threading.Lock()
        self._due = clock() + interval_s
        self._poke = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> set[str]:
        """Check every index against a fresh listing; the uids found gone."""
        if not self._cluster.synced:
            return set()
        known = self._cluster.gone
        gone: set[str] = set()
        touched: set[str] = set()  # namespaces with something newly found gone
        fresh = 0
        for kind in KINDS:
            listing = self._lister(kind, self._namespaces)
            for held in self._cluster.indexed(kind):
                if not listing.lacks(held.uid, held.version):
                    continue
                if kind == "canaryreleases":
                    self._forget((held.key[0], held.key[1]), held.uid)
                else:
                    gone.add(held.uid)
                if held.uid not in known:
                    touched.add(held.key[0])
                    fresh += 1
                    MISSED_DELETIONS.labels(kind).inc()
        self._cluster.gone = frozenset(gone)  # what is no longer held needs no skipping
        if touched:
            log.warning(
                "the watches missed deletions; what they still hold is set aside",
                objects=fresh,
                namespaces=sorted(touched),
            )
            held_releases = self._cluster.releases.keys()
            for key in held_releases:
                if key[0] in touched:
                    self._wake(key)
        return gone

    def soon(self) -> None:
        """A watch is listing again: check shortly, not at the next interval."""
        with self._lock:
            due = self._clock() + SETTLE_S
            if due < self._due:
                self._due = due
                self._poke.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="phantom-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                delay = self._due - self._clock()
                if delay <= 0:
                    self._due = self._clock() + self._interval_s
            if delay > 0:
                self._poke.wait(delay)
                self._poke.clear()
                continue
            try:
                self.sweep()
            except Exception as exc:  # the next interval tries again
                log.warning("could not check the watches for missed deletions", error=str(exc))
