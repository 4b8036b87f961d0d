"""Shared by the tests of images on a local model (tests/test_local_images.py, tests/test_local_image_refusals.py,
tests/test_http_images.py, tests/shutdown/test_cut_and_signals.py): the tiny projector's name, a load of the tiny
model with a projector, an image part, a user turn that looks at images, and a Generate stream's text, scores and
result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import TINY_MODEL
from tests.tiny_projector import png
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

MMPROJ = "hf:warpcore/tiny:mmproj.gguf"


def load_request(mmproj: str, model_id: str = "seeing", parallel: int | None = None) -> pb.LoadModelRequest:
    local = pb.LocalBackendConfig(parallel=parallel, llama_cpp=pb.LlamaCppConfig(mmproj=mmproj))
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        backend_config=pb.BackendConfig(local=local),
    )


def image(seed: int) -> cpb.ContentPart:
    return cpb.ContentPart(image=cpb.ImagePart(data=png(seed), media_type="image/png"))


def looking(*parts: cpb.ContentPart, model_id: str = "seeing", logprobs: bool = False) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id,
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="What is this?", parts=parts)],
        options=pb.GenerationOptions(max_tokens=8, temperature=0, logprobs=logprobs or None),
    )


async def generated(stub: Stub, request: pb.GenerateRequest) -> tuple[str, list[float], pb.GenerateResult]:
    text: list[str] = []
    scores: list[float] = []
    results = []
    async for frame in stub.Generate(request):
        if frame.HasField("delta"):
            text.append(frame.delta.text)
            scores += [token.logprob for token in frame.delta.logprobs]
        else:
            results.append(frame.result)
    assert len(results) == 1
    return "".join(text), scores, results[0]
