"""Run the server with `python -m warpcore.server`."""

from warpcore.server.cli import main

main()
