"""The floor of any Python gRPC gateway: a bare grpc.aio InferenceService on uvloop that streams canned tokens, own
process."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop

from bench.api_upstream import raise_open_file_limit, token, until_stopped
from warpcore.v1 import inference_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


async def generate(
    request: pb.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[pb.GenerateResponse]:
    """Answers at once with the upstream's tokens, one message each: no upstream, validation or interceptor.
    What it costs is grpc.aio's own: a time to first token no Python gateway can beat."""
    for index in range(request.options.max_tokens):
        yield pb.GenerateResponse(delta=pb.TextDelta(text=token(index)))
    yield pb.GenerateResponse(result=pb.GenerateResult(finish_reason=pb.FINISH_REASON_LENGTH))


async def serve() -> None:
    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(
        generate,
        request_deserializer=pb.GenerateRequest.FromString,
        response_serializer=pb.GenerateResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Generate": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving on 127.0.0.1:{port}", flush=True)
    await until_stopped()
    await server.stop(0)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    raise_open_file_limit()
    uvloop.run(serve())
