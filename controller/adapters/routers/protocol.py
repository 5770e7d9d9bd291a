"""The one seam every traffic router sits behind, as Argo Rollouts' trafficrouting reconciler.

The engine decides weights; a router only applies them to its kind of route
and reads back what the route says, so the engine can count a weight as set
only once the route shows it. Every write is a server-side apply under the
controller's own field manager and is never forced: a field another manager
owns raises `RouteConflict` instead of being taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.api.traffic import RouterKind
from controller.engine.observations import RouteView


@dataclass(frozen=True)
class RouteIntent:
    """What the engine last asked of the route (kept in status.traffic across restarts)."""

    weight: int = 0
    header_route: bool = False


class RouteConflict(Exception):
    """Another field manager owns a field the router must change; the apply was not forced."""

    def __init__(self, message: str, managers: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.managers = managers


class RouteChanged(Exception):
    """The route changed between our read and our apply; the next reconcile reads it again."""


class TrafficRouter(Protocol):
    kind: RouterKind

    def verify(self, intent: RouteIntent) -> RouteView:
        """Read the route: the weight and header route it applies now, and what is in the way.

        When the route does not show `intent`, a dry-run apply of it tells
        whether another field manager blocks it (`RouteView.conflict`).
        """

    def set_weight(self, weight: int) -> int:
        """Send `weight`% to the canary; returns the weight the route applies afterwards."""

    def set_header_route(self, enabled: bool) -> bool:
        """Add or remove the header route; returns whether the route has it afterwards."""

    def reset(self) -> None:
        """Everything to stable: weight 0 and no header route."""
