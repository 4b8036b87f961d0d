"""A blocking client over the generated stubs, taking plain Python values."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

import grpc

from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
_BACKENDS = {
    "openai": pb.BACKEND_TYPE_OPENAI,
    "anthropic": pb.BACKEND_TYPE_ANTHROPIC,
    "llama_cpp": pb.BACKEND_TYPE_LLAMA_CPP,
}


class Client:
    """Talks to one warpcore server. `target` defaults to $WARPCORE_TARGET, else 127.0.0.1:50051."""

    def __init__(self, target: str | None = None, *, timeout: float | None = None) -> None:
        self.target = target or os.environ.get("WARPCORE_TARGET") or DEFAULT_TARGET
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target)
        self.stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    def load_model(
        self,
        model: str,
        *,
        backend: str = "llama_cpp",
        model_id: str = "",
        backend_config: pb.BackendConfig | None = None,
        context_size: int | None = None,
    ) -> pb.Model:
        request = pb.LoadModelRequest(
            backend=_BACKENDS[backend],
            model=model,
            model_id=model_id,
            backend_config=backend_config,
            model_config=pb.ModelConfig(context_size=context_size),
        )
        return self.stub.LoadModel(request, timeout=self.timeout).model

    def unload_model(self, model_id: str) -> pb.Model:
        return self.stub.UnloadModel(pb.UnloadModelRequest(model_id=model_id), timeout=self.timeout).model

    def list_models(self, backend: str | None = None) -> Sequence[pb.Model]:
        request = pb.ListModelsRequest(backend=_BACKENDS[backend] if backend else pb.BACKEND_TYPE_UNSPECIFIED)
        return self.stub.ListModels(request, timeout=self.timeout).models

    def generate(
        self,
        model_id: str,
        *,
        prompt: str = "",
        messages: Sequence[tuple[str, str]] = (),
        options: pb.GenerationOptions | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[pb.GenerateResponse]:
        """Stream the raw frames of a generation; `messages` are (role, content) pairs, e.g. ("user", "Hi").

        `max_tokens`, when given, overrides the one in `options`. The result is the gRPC call: `cancel()` stops it.
        """
        merged = pb.GenerationOptions()
        if options is not None:
            merged.CopyFrom(options)
        if max_tokens is not None:
            merged.max_tokens = max_tokens
        request = pb.GenerateRequest(
            model_id=model_id,
            prompt=prompt,
            messages=[
                pb.ChatMessage(role=pb.Role.Value(f"ROLE_{role.upper()}"), content=text) for role, text in messages
            ],
            options=merged,
        )
        return self.stub.Generate(request, timeout=self.timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def text_deltas(frames: Iterable[pb.GenerateResponse]) -> Iterator[str]:
    """The generated text of a Generate stream, piece by piece."""
    for frame in frames:
        if frame.HasField("delta"):
            yield frame.delta.text
