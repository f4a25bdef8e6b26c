"""The app as an import path, for hypercorn's worker processes: ``proxy.asgi:app``."""

from __future__ import annotations

from .app import create_app
from .config import Settings
from .logs import setup_logging

settings = Settings.from_env()
setup_logging(settings)
app = create_app(settings)
