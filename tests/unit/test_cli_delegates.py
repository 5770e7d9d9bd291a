"""Subcommands that other parts of the project implement, reached through `canaryctl`."""

from __future__ import annotations

import pathlib

import pytest

from controller.cli import main as cli


def test_lint_migrations_gets_its_own_arguments_and_exit_code(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dropping = tmp_path / "0002_drop.sql"
    dropping.write_text("ALTER TABLE users DROP COLUMN email;\n")
    adding = tmp_path / "0003_add.sql"
    adding.write_text("ALTER TABLE users ADD COLUMN key_hash varchar(255);\n")
    assert cli.main(["lint-migrations", str(dropping)]) == 1
    assert "users.email" in capsys.readouterr().out
    # global options before the command are skipped; the rest is the delegate's
    assert cli.main(["-n", "shop", "lint-migrations", "--policy", "warn", str(dropping)]) == 0
    assert cli.main(["lint-migrations", str(adding)]) == 0


def test_a_delegate_that_is_not_installed_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.DELEGATES, "replay", ("controller.not_here.cli", "replay"))
    assert cli.main(["replay", "payments"]) == 2
    assert "not available in this version" in capsys.readouterr().err
