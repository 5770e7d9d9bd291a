"""What the cluster benchmarks share: where they run, how they follow objects, where results go."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import watch

from controller.api.spec import GROUP, VERSION
from devenv.cluster import LocalCluster, resolve_bin_dir


class WatchThread(threading.Thread):
    """Follows one LIST+WATCH until stopped, timing each event on arrival.

    A watch the apiserver ends (410, 504, a restart) is listed and watched
    again: a benchmark that injects faults must not lose its clock.
    """

    def __init__(self, list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.list_call, self.args, self.kwargs = list_call, args, kwargs
        self.stop_event = threading.Event()

    def on_event(self, obj: Any, now: float) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop_event.is_set():
            stream = watch.Watch().stream(
                self.list_call, *self.args, timeout_seconds=30, **self.kwargs
            )
            try:
                for event in stream:
                    self.on_event(event["object"], time.monotonic())
                    if self.stop_event.is_set():
                        return
            except Exception:  # a dropped watch: list again
                time.sleep(1)


def canary_release(
    name: str, image: str, steps: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """A CanaryRelease at tag v1 for the Deployment of the same name; `spec` adds the rest."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": name},
            "release": {"tag": "v1", "image": image},
            "steps": steps,
            **spec,
        },
    }


def run_on_a_cluster(measure: Callable[[LocalCluster], dict[str, Any]], results: Path) -> None:
    """`measure` on CANARY_KUBECONFIG's cluster if set, else on a new local one; saved, printed."""
    existing = os.environ.get("CANARY_KUBECONFIG")
    if existing:
        result = measure(LocalCluster.existing(existing, resolve_bin_dir()))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as state:
            cluster = LocalCluster.start(Path(state), resolve_bin_dir())
            try:
                result = measure(cluster)
            finally:
                cluster.stop()
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
