"""Install the pinned agent CLIs into their cached folder, each only when it is missing.

``python -m tests.agents.install`` (``make test-agents`` runs it). npm packages go in with
``--ignore-scripts``: some postinstall scripts download a platform binary, which works only with
the open internet; every client here ships its binary in a registry package instead. A client
that cannot be installed fails with a message that names it and the registry, and the log's tail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from tests.agents.pins import NPM, NPM_REBUILD, PYPI, clients_dir

DONE = ".installed"  # written last: a folder without it is a failed or interrupted install


class InstallError(Exception):
    pass


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise InstallError(f"could not install {what} ({argv[0]} exited {code}); {log}:\n{tail}")


def install_npm(root: Path) -> None:
    folder = root / "npm"
    if (folder / DONE).exists():
        return
    npm = shutil.which("npm")
    what = ", ".join(f"{p}@{v}" for p, v in NPM.values()) + " from the npm registry"
    if npm is None:
        raise InstallError(f"could not install {what}: npm is not on PATH (apt-get install npm)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = root / "npm.log"
    log.unlink(missing_ok=True)
    specs = [f"{package}@{version}" for package, version in NPM.values()]
    quiet = ["--prefix", str(folder), "--no-audit", "--no-fund", "--no-update-notifier"]
    _run([npm, "install", "--ignore-scripts", *quiet, *specs], log, what)
    _run([npm, "rebuild", *quiet, *NPM_REBUILD], log, what)
    (folder / DONE).touch()


def install_pypi(root: Path, name: str) -> None:
    package, version = PYPI[name]
    venv = root / name
    if (venv / DONE).exists():
        return
    shutil.rmtree(venv, ignore_errors=True)
    log = root / f"{name}.log"
    log.unlink(missing_ok=True)
    what = f"{package}=={version} from PyPI"
    _run([sys.executable, "-m", "venv", str(venv)], log, what)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, f"{package}=={version}"], log, what)
    (venv / DONE).touch()


def main() -> int:
    root = clients_dir()
    root.mkdir(parents=True, exist_ok=True)
    print(f"agent CLIs: {root}", flush=True)
    steps = [partial(install_npm, root), *(partial(install_pypi, root, name) for name in PYPI)]
    failed = []
    with ThreadPoolExecutor(len(steps)) as pool:  # mostly downloads: side by side
        for future in [pool.submit(step) for step in steps]:
            try:
                future.result()
            except (InstallError, OSError, subprocess.TimeoutExpired) as exc:
                failed.append(str(exc))
    for message in failed:
        print(f"make test-agents: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
