"""Run the server with `python -m warpcore.server`."""

from warpcore.server.command import main

main()
