"""A minimal typed client for the warpcore gRPC API."""

from warpcore.client._client import DEFAULT_TARGET, Client, text_deltas

__all__ = ["DEFAULT_TARGET", "Client", "text_deltas"]
