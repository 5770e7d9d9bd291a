"""canaryctl reaches the cluster kubectl would, and says so plainly when it cannot."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest
import yaml

from controller.cli import main as cli
from controller.cli.connecting import connect
from controller.runtime.clients import CountingApiClient


def _kubeconfig(path: pathlib.Path, name: str, port: int, namespace: str) -> pathlib.Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": name,
                "clusters": [{"name": name, "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": name, "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": name,
                        "context": {"cluster": name, "user": name, "namespace": namespace},
                    }
                ],
            }
        )
    )
    return path


def test_the_first_file_in_kubeconfig_names_the_context_as_in_kubectl(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _kubeconfig(tmp_path / "a.yaml", "prod", 18081, "shop")
    second = _kubeconfig(tmp_path / "b.yaml", "staging", 18082, "staging-shop")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(second)]))
    conn = connect(None, None, None)
    assert (conn.api.configuration.host, conn.namespace) == ("http://127.0.0.1:18081", "shop")
    chosen = connect(None, "staging", None)  # --context still picks any of them
    assert (chosen.api.configuration.host, chosen.namespace) == (
        "http://127.0.0.1:18082",
        "staging-shop",
    )
    missing = tmp_path / "missing.yaml"
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(missing), str(second)]))
    assert connect(None, None, None).namespace == "staging-shop"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_apiserver_or_a_bad_context_is_one_clear_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _kubeconfig(tmp_path / "a.yaml", "prod", _closed_port(), "shop")
    assert cli.main(["--kubeconfig", str(path), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the apiserver:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert cli.main(["--kubeconfig", str(path), "--context", "nope", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable kubeconfig:") and "nope" in err


def test_requests_time_out_and_are_retried_once(tmp_path: pathlib.Path) -> None:
    conn = connect(str(_kubeconfig(tmp_path / "a.yaml", "prod", 18081, "shop")), None, None)
    assert conn.api.configuration.retries.total == 1
    assert isinstance(conn.api, CountingApiClient)  # which sets the 30 s request timeout


@pytest.mark.parametrize(
    "content", ["a: [\n", ":::not yaml[\n", None], ids=["yaml-error", "not-a-mapping", "directory"]
)
def test_a_malformed_kubeconfig_is_one_clear_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "config"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    assert cli.main(["--kubeconfig", str(path), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable kubeconfig:") and len(err.strip().splitlines()) == 1
