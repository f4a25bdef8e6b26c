"""The app as an import path, for hypercorn's worker processes: ``proxy.asgi:app``."""

from __future__ import annotations

import gc
import sys

from .app import create_app
from .config import Settings
from .logs import setup_logging

settings = Settings.from_env()
setup_logging(settings)
app = create_app(settings)

# Streaming allocates many short-lived containers; the default collector runs a
# young-generation pass every 700 of them and full passes that pause every stream.
# Freezing what startup made and collecting less often cuts that cost (see
# benchmarks/RESULTS.md); reference counting still frees nearly everything at once.
gc.freeze()
gc.set_threshold(50_000, 20, 100)

# A big request is planned in a worker thread (service.OFF_LOOP_BYTES). While it runs, the
# loop waits for the GIL at most this long before taking it back (CPython's default is
# 5 ms, which would stall every stream that long); with one thread it changes nothing.
sys.setswitchinterval(0.001)
