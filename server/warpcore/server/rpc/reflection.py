"""Server reflection, grpcio's, over a descriptor pool that also finds the file of a method's full name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool
from grpc_reflection.v1alpha import reflection


class _MethodsPool:
    """The default descriptor pool, but a method's full name ("warpcore.v1.InferenceService.Generate") also finds
    the file of its service, as grpcurl's `describe` of a method asks: protobuf's upb pool finds services, messages,
    fields and enums, not methods."""

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            found = self._pool.FindServiceByName(service)  # KeyError too when it is no service: NOT_FOUND
            if method not in found.methods_by_name:
                raise
            return found.file


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    reflection.enable_server_reflection((*service_names, reflection.SERVICE_NAME), server, pool=_MethodsPool())
