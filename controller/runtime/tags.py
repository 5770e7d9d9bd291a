"""Release tags: which ones may start a release, and which of two is older.

The webhook starts production releases from a Git tag, so it only accepts
tags that look like releases (semver by default; a CanaryRelease can set its
own pattern), and never moves a release backwards by itself: a late or
replayed event for an old tag must not roll production back. Ordering uses
semver precedence when both tags are semver, and otherwise a natural order
(numbers compared as numbers), which suits date tags like 2026.11.24-1.
"""

from __future__ import annotations

import re
from functools import total_ordering

from controller.api.spec import TAG_PATTERN

SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
DEFAULT_TAG_PATTERN = SEMVER.pattern
# What spec.release.tag accepts (the CRD enforces the same).
VALID_TAG = re.compile(TAG_PATTERN)
MAX_TAG_LENGTH = 128


class BadPattern(ValueError):
    pass


def matches(tag: str, pattern: str | None) -> bool:
    """Does the whole tag match the pattern (semver when None)? Raises BadPattern."""
    try:
        compiled = re.compile(pattern) if pattern else SEMVER
    except re.error as exc:
        raise BadPattern(f"invalid tag pattern {pattern!r}: {exc}") from exc
    return compiled.fullmatch(tag) is not None


def valid_tag(tag: str) -> bool:
    return len(tag) <= MAX_TAG_LENGTH and VALID_TAG.match(tag) is not None


@total_ordering
class _Identifier:
    """A pre-release identifier: numeric ones sort numerically and below alphanumeric ones."""

    def __init__(self, text: str) -> None:
        self.numeric = text.isdigit()
        self.value: int | str = int(text) if self.numeric else text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identifier) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: _Identifier) -> bool:
        if self.numeric != other.numeric:
            return self.numeric
        return self.value < other.value  # type: ignore[operator]


def _semver_key(tag: str) -> tuple[object, ...] | None:
    match = SEMVER.match(tag)
    if match is None:
        return None
    core = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    pre = match["pre"]
    if pre is None:
        return (*core, 1, ())  # a release sorts above its pre-releases
    return (*core, 0, tuple(_Identifier(p) for p in pre.split(".")))


def _natural_key(tag: str) -> tuple[tuple[int, int | str], ...]:
    parts = re.findall(r"\d+|[^\d]+", tag.removeprefix("v"))
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def is_older(candidate: str, running: str) -> bool:
    """True when `candidate` sorts strictly before `running` (semver first, else natural)."""
    a, b = _semver_key(candidate), _semver_key(running)
    if a is not None and b is not None:
        return a < b
    return _natural_key(candidate) < _natural_key(running)
