"""warpcore's gRPC inference gateway server."""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("warpcore-server")
except importlib.metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "unknown"
