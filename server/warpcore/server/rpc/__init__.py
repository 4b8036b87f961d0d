"""The gRPC front door: the servicer, the translation between protobuf and domain values, the status mapping,
authentication and the access log. The only server package that imports grpc or the generated stubs."""
