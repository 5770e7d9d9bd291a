"""Shared pytest wiring.

The real servers (Kubernetes control plane, Prometheus, PostgreSQL) are
session-scoped fixtures defined in the plugins below; each test gets its own
namespace and database. Tests under tests/unit need none of them.
"""

from __future__ import annotations

import pathlib

import pytest

pytest_plugins = [
    "tests.fixtures_cluster",
    "tests.fixtures_servers",
    "tests.fixtures_controller",
    "tests.fixtures_routers",
]

_HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder so `-m unit` selects exactly the server-free ones."""
    for item in items:
        parts = pathlib.Path(str(item.fspath)).relative_to(_HERE).parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
