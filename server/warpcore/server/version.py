"""The installed warpcore-server's version, for `--version` and the line the server starts with. Apart from the
package's `__init__`, which runs before the `warpcore-server` command takes SIGINT over (command.py): reading a
distribution's metadata there would widen the moment in which Ctrl-C prints a traceback."""

from __future__ import annotations

import importlib.metadata

try:
    VERSION = importlib.metadata.version("warpcore-server")
except importlib.metadata.PackageNotFoundError:  # imported from a source tree, not installed
    VERSION = "unknown"
