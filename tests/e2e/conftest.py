"""E2e fixtures live in the `tests.fixtures_controller` plugin (shared with integration tests)."""

from tests.fixtures_controller import ControllerFactory

__all__ = ["ControllerFactory"]
