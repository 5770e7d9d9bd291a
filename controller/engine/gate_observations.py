"""What the runtime observed about gates and hook Jobs, in the plain form the engine reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from controller.gates.checks import GateCheck

JobState = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobView:
    """A Job the controller created for this release, by the labels it put on it."""

    name: str
    state: JobState
    created_at: datetime
    message: str = ""
    tag: str | None = None  # the tag it ran for


@dataclass(frozen=True)
class GateObservations:
    """`checks` were made for `tag` (None: none were made); `jobs` is None when not read."""

    release: str
    tag: str | None = None
    checks: tuple[GateCheck, ...] = ()
    jobs: tuple[JobView, ...] | None = None

    def job(self, name: str) -> JobView | None:
        return next((j for j in self.jobs or () if j.name == name), None)
