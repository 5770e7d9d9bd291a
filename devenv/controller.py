"""Run the controller as a real local process (`python -m controller run`) for tests and demo."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from devenv.cluster import free_port


class ControllerProcess:
    def __init__(
        self,
        kubeconfig: pathlib.Path | str,
        log_path: pathlib.Path,
        namespaces: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        #: /metrics, /healthz and /readyz; a free port, so parallel controllers never collide
        self.metrics_port = free_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self) -> ControllerProcess:
        args = [sys.executable, "-m", "controller", "run", "--metrics-address", "127.0.0.1"]
        args += ["--metrics-port", str(self.metrics_port)]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "CANARY_RECONCILE_INTERVAL": "1",
            **self.extra_env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def kill(self) -> None:
        """SIGKILL: the harshest crash, with no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
