"""Subcommands that other parts of the project implement, reached through `canaryctl`."""

from __future__ import annotations

import json
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
    # global options it does not take are skipped; the rest is the delegate's
    assert cli.main(["-n", "shop", "lint-migrations", "--policy", "warn", str(dropping)]) == 0
    capsys.readouterr()
    assert cli.main(["-o", "json", "lint-migrations", "--policy", "warn", str(dropping)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["statement"].endswith("DROP COLUMN email")
    assert cli.main(["lint-migrations", str(adding)]) == 0


def test_a_delegate_that_is_not_installed_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.DELEGATES, "replay", ("controller.not_here.cli", "replay"))
    assert cli.main(["replay", "payments"]) == 2
    assert "not available in this version" in capsys.readouterr().err


def test_replay_is_reached_through_canaryctl(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", "--help"]) == 0
    assert "--from" in capsys.readouterr().out
    bare = tmp_path / "release.yaml"
    bare.write_text("targetRef: {name: app}\nrelease: {tag: v2, image: 'r/app:{tag}'}\n")
    assert cli.main(["-n", "shop", "replay", "-f", str(bare), "--from", "2026-11-01T09:00Z"]) == 2
    assert "no analysis to replay" in capsys.readouterr().err
    assert cli.main(["replay", "-f", str(bare)]) == 2  # --from is required
    assert "--from" in capsys.readouterr().err


def test_a_namespace_named_like_a_delegate_is_a_namespace() -> None:
    assert cli._delegated(["-n", "replay", "list"]) is None
    assert cli._delegated(["--namespace", "lint-migrations", "status", "x"]) is None
    assert cli._delegated(["-n", "replay", "replay", "-f", "r.yaml"]) == (
        "replay",
        ["-n", "replay", "-f", "r.yaml"],
    )


def test_global_options_before_a_delegate_reach_it_when_it_takes_them() -> None:
    argv = ["--context", "prod", "--namespace=shop", "-o", "json", "replay", "-f", "r.yaml"]
    assert cli._delegated(argv) == ("replay", ["--namespace=shop", "-o", "json", "-f", "r.yaml"])
    argv = ["-n", "shop", "--kubeconfig", "k", "-o", "json", "lint-migrations", "a.sql"]
    assert cli._delegated(argv) == ("lint-migrations", ["-o", "json", "a.sql"])
    argv = ["-nshop", "-ojson", "--context=prod", "replay", "-f", "r.yaml"]
    assert cli._delegated(argv) == ("replay", ["-nshop", "-ojson", "-f", "r.yaml"])
