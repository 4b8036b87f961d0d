"""warpcore's gRPC inference gateway server."""
