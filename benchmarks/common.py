"""Helpers shared by the benchmark scripts in this directory.

The scripts run as ``.venv/bin/python benchmarks/bench_X.py``, so this directory is
``sys.path[0]`` and they use ``import common``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- the machine


def cpu_model(default: str = "unknown") -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or ``default``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def machine(cpu_default: str = "unknown", *, implementation: bool = True) -> dict[str, str]:
    """CPU model, logical cores, Python and OS, under the keys cpu, cores, python, os.

    ``implementation=False`` gives the bare Python version (``3.12.3``) without the
    implementation's name.
    """
    python = platform.python_version()
    return {
        "cpu": cpu_model(cpu_default),
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {python}" if implementation else python,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_busy() -> float:
    """CPU seconds the whole machine has used since boot, idle and iowait excluded
    (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def wait_quiet(
    limit: float,
    quiet_for: float = 10.0,
    *,
    interval: float = 1.0,
    verbose: bool = True,
    indent: str = "",
    give_up: str = "running anyway",
) -> bool:
    """Wait (at most ``limit`` s) until the machine uses under 0.2 cores for ``quiet_for`` s.

    Load is sampled every ``interval`` s. It counts every process, so use it only while the
    benchmark's own processes are idle. ``indent`` prefixes the progress lines and
    ``give_up`` ends the one printed when the machine stayed busy. True if it got quiet.
    """
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        busy0 = machine_busy()
        await asyncio.sleep(interval)
        load = (machine_busy() - busy0) / interval
        if load > 0.2:
            quiet_since = time.monotonic()
            if verbose:
                print(f"{indent}waiting for a quiet machine: {load:.2f} cores busy", flush=True)
        elif time.monotonic() - quiet_since >= quiet_for:
            return True
    if verbose:
        print(f"{indent}the machine did not get quiet; {give_up}", flush=True)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- the source


def git_head(
    paths: Sequence[str] = ("proxy", "parser"), short: str = "--short=10"
) -> tuple[str, bool]:
    """The abbreviated HEAD commit, and whether ``paths`` have uncommitted changes.

    Raises ``OSError`` or ``subprocess.SubprocessError`` when git fails.
    """
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", short, "HEAD"], check=True, capture_output=True, text=True, timeout=5
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", *paths],
        check=True,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return head, bool(dirty)


def source_note(prefix: str = "") -> str:
    """Where the measured code came from, e.g. ``prefix + "the working tree at `abc1234567`"``,
    with " with uncommitted changes" when ``proxy/`` or ``parser/`` differ from HEAD."""
    try:
        head, dirty = git_head()
    except (OSError, subprocess.SubprocessError):
        return prefix + "the working tree"
    return f"{prefix}the working tree at `{head}`" + (" with uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------- RESULTS.md


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of section ``name`` in RESULTS.md."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(
    path: Path, name: str, body: str, *, framed: bool = False, tight: bool = False
) -> None:
    """Replace section ``name`` of ``path`` (between its markers) with ``body``.

    Appends the section (creating the file) if it is missing. ``framed``: ``body`` already
    starts and ends with the markers. ``tight``: drop the blank lines after the section.
    """
    begin, end = markers(name)
    block = body.rstrip("\n") if framed else f"{begin}\n{body.rstrip(chr(10))}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = text.find(begin)
    stop = text.find(end, start) if start >= 0 else -1
    if stop >= 0:
        rest = text[stop + len(end) :]
        text = text[:start] + block + ("\n" + rest.lstrip("\n") if tight else rest)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
