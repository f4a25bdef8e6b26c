"""Command line.

minimax-m2-proxy [serve] [--host H] [--port P] [--workers N] [--loop auto|uvloop|asyncio]
minimax-m2-proxy sim [--port P] ...        the simulated MiniMax-M2 backend
minimax-m2-proxy replay TRACE [--request-id ID]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Any

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["sim"]:
        from .sim import main as sim_main

        sim_main(args[1:])
        return
    if args[:1] == ["replay"]:
        from .replay import main as replay_main

        replay_main(args[1:])
        return
    if args[:1] == ["serve"]:
        args = args[1:]
    serve(args)


def serve(argv: list[str]) -> None:
    from hypercorn.config import Config
    from hypercorn.run import run

    from .config import ConfigError, Settings

    ap = argparse.ArgumentParser(prog="minimax-m2-proxy", description=__doc__)
    ap.add_argument("--host", help="listen address (default: HOST or 0.0.0.0)")
    ap.add_argument("--port", type=int, help="listen port (default: PORT or 8001)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument(
        "--graceful-timeout",
        type=float,
        default=float(os.environ.get("GRACEFUL_TIMEOUT_SECONDS", "30")),
        help="on SIGTERM, seconds in-flight streams may take to finish (default 30)",
    )
    ap.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        help="event loop (default: EVENT_LOOP or auto: uvloop where it is installed)",
    )
    opts = ap.parse_args(argv)
    try:
        settings = Settings.from_env()
        _check_limits(settings, opts.workers)
    except ConfigError as exc:
        sys.exit(f"minimax-m2-proxy: configuration error: {exc}")
    config = Config()
    config.worker_class = _worker_class(opts.loop or settings.event_loop)
    config.bind = [f"{opts.host or settings.host}:{opts.port or settings.port}"]
    config.application_path = "proxy.asgi:app"
    # One worker runs in this process; more are hypercorn's spawned processes.
    config.workers = 0 if opts.workers <= 1 else opts.workers
    if config.workers and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers inherit this, so /metrics on any of them reports all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="minimax-m2-proxy-")
    config.graceful_timeout = opts.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our handler, once
    config.keep_alive_timeout = 75
    # hypercorn's default of 100 refuses connections when hundreds of clients open at once.
    config.backlog = 2048
    sys.exit(run(config))


def _check_limits(settings: Any, workers: int) -> None:
    """Refuse per-key limits that each of several workers would count on its own.

    Raises:
        ConfigError: saying to share them through Redis.
    """
    from .config import ConfigError
    from .keys import Keys

    if workers > 1 and settings.limits_backend == "memory" and Keys(settings).limited:
        raise ConfigError(
            f"--workers {workers} with per-key limits (AUTH_KEYS_FILE) and LIMITS_BACKEND=memory "
            f"would let each key use {workers} times its limits, one count per worker; "
            "set LIMITS_BACKEND=redis (and REDIS_URL) so the workers share them through Redis"
        )


def _worker_class(loop: str) -> str:
    """hypercorn's worker class for the EVENT_LOOP setting (or --loop)."""
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    if loop == "uvloop" and not has_uvloop:
        sys.exit("minimax-m2-proxy: EVENT_LOOP=uvloop, but uvloop is not installed")
    return "uvloop" if loop == "uvloop" or (loop == "auto" and has_uvloop) else "asyncio"


if __name__ == "__main__":
    main()
