"""A real fleet on loopback for the router tests and benchmark: simulated backend replicas
as their own processes, behind a real router (``smg``, SGLang's Model Gateway, installed
from PyPI by the test extra)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def smg_binary() -> str | None:
    """The ``smg`` command of this virtualenv (else of PATH), or None."""
    beside = Path(sys.executable).with_name("smg")
    return str(beside) if beside.exists() else shutil.which("smg")


def _wait(url: str, ok: Any, proc: subprocess.Popen[bytes], what: str, limit: float = 60) -> None:
    """Poll ``url`` until ``ok(response)``; fail early if ``proc`` died."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if ok(httpx.get(url, timeout=2)):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not get ready in {limit:.0f} s")


class Replica:
    """``python -m proxy.sim`` in its own process."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "proxy.sim", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        _wait(self.url + "/v1/models", lambda r: r.status_code == 200, self.proc, "a replica")

    def requests(self) -> list[dict[str, Any]]:
        """The chat requests this replica got (its request log)."""
        log = httpx.get(self.url + "/_sim/requests", timeout=10).json()
        return [r for r in log if r["path"] == "/v1/chat/completions"]

    def kill(self) -> None:
        """SIGKILL: the replica is gone at once, as when its machine fails."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Router:
    """``smg launch`` in front of ``workers``, on ports of its own."""

    def __init__(self, binary: str, workers: list[str], policy: str, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="smg-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [binary, "launch", "--host", "127.0.0.1", "--port", str(self.port),
               "--worker-urls", *workers, "--policy", policy,
               "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
               "--log-level", "warn", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        ready = len(workers)
        _wait(self.url + "/readiness",
              lambda r: r.status_code == 200 and r.json().get("healthy_workers") == ready,
              self.proc, "smg")  # fmt: skip

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # it waits for open connections to drain
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)
