"""`python -m controller.cli ...` is `canaryctl ...`."""

from __future__ import annotations

from controller.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
