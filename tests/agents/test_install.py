"""A client the registries cannot give fails `make test-agents` with a message that names it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.agents import install


def test_a_failed_install_names_the_client_and_shows_the_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    failing = [sys.executable, "-c", "print('no matching version found'); raise SystemExit(3)"]
    with pytest.raises(install.InstallError) as caught:
        install._run(failing, log, "cline@99.0.0 from the npm registry")
    message = str(caught.value)
    assert message.startswith("could not install cline@99.0.0 from the npm registry (")
    assert "exited 3" in message and "no matching version found" in message


def test_no_npm_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm here
    with pytest.raises(install.InstallError, match=r"npm is not on PATH"):
        install.install_npm(tmp_path)
    assert not (tmp_path / "npm" / install.DONE).exists()


def test_main_reports_every_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENT_CLIENTS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(install, "PYPI", {})  # the npm part alone: no download
    assert install.main() == 1
    assert (
        "make test-agents: could not install @anthropic-ai/claude-code@" in capsys.readouterr().err
    )
