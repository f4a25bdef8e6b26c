"""``python -m proxy.sim``: serve the simulated backend until interrupted."""

from .server import main

main()
