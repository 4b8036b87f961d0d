"""The protocol-neutral core: domain values and errors, admission limits, the model registry and the data plane
that every front door (gRPC today) drives. Nothing here imports gRPC or protobuf."""
