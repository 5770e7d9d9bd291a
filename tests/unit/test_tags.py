"""Which tags the webhook accepts, and which of two tags is older."""

from __future__ import annotations

import pytest

from controller.runtime.tags import BadPattern, is_older, matches, valid_tag


@pytest.mark.parametrize(
    "tag", ["v1.2.3", "1.2.3", "v10.0.0-rc.1", "v1.2.3+build.5", "v0.0.1-alpha-2"]
)
def test_semver_tags_match_the_default_pattern(tag: str) -> None:
    assert matches(tag, None)


@pytest.mark.parametrize("tag", ["latest", "v1.2", "main", "v01.2.3", "v1.2.3.4", "release-7"])
def test_other_tags_do_not_match_the_default_pattern(tag: str) -> None:
    assert not matches(tag, None)


def test_a_custom_pattern_must_match_the_whole_tag() -> None:
    assert matches("2026.11.24-1", r"\d{4}\.\d{2}\.\d{2}-\d+")
    assert not matches("x2026.11.24-1", r"\d{4}\.\d{2}\.\d{2}-\d+")


def test_a_broken_pattern_is_reported_not_crashed_on() -> None:
    with pytest.raises(BadPattern, match="invalid tag pattern"):
        matches("v1.0.0", "v(")


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("v1.2.3", "v1.2.4"),
        ("v1.9.0", "v1.10.0"),  # numeric, not lexical
        ("v1.0.0-rc.1", "v1.0.0"),  # a pre-release sorts before its release
        ("v1.0.0-alpha", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.2", "v1.0.0-alpha.10"),
        ("v1.0.0-1", "v1.0.0-alpha"),  # numeric identifiers sort below alphanumeric
        ("1.2.3", "v1.2.4"),  # the v prefix does not matter
        ("2026.01.9", "2026.01.10"),  # non-semver: natural order
    ],
)
def test_ordering(older: str, newer: str) -> None:
    assert is_older(older, newer)
    assert not is_older(newer, older)


def test_equal_tags_are_not_older_and_build_metadata_is_ignored() -> None:
    assert not is_older("v1.2.3", "v1.2.3")
    assert not is_older("v1.2.3+b2", "v1.2.3+b1") and not is_older("v1.2.3+b1", "v1.2.3+b2")


def test_valid_tag_follows_the_crd() -> None:
    assert valid_tag("v1.2.3+build")
    assert not valid_tag("-v1") and not valid_tag("v1 2") and not valid_tag("v" * 129)
