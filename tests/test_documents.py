"""PDF documents in chat turns: each hosted wire protocol receives them in the form its API documents (checked on the
received request body), across the HTTP door's dialects too; what a backend or the domain cannot take is refused
before anything is sent, naming the part."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import grpc
import openai
import pytest

from tests.conftest import collect, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import ANTHROPIC_KEY, load, posts
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from warpcore.client import ApiConfig, AsyncClient, Document, Message
from warpcore.server.core.bounds import MAX_DOCUMENTS
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PDF = b"%PDF-1.7\n" + bytes(range(48)) + b"\n%%EOF\n"
PDF_BASE64 = base64.b64encode(PDF).decode()
URL = "https://documents.example/report.pdf"


def document(data: bytes = PDF, *, url: str = "", name: str = "", media_type: str = "") -> cpb.ContentPart:
    part = (
        cpb.DocumentPart(url=url, name=name) if url else cpb.DocumentPart(data=data, name=name, media_type=media_type)
    )
    return cpb.ContentPart(document=part)


def reading(*parts: cpb.ContentPart, model_id: str = "m", role: pb.Role.ValueType = pb.ROLE_USER) -> pb.GenerateRequest:
    """A question with `parts`; or, for another role, the question, then a turn of that role with them."""
    question = pb.ChatMessage(role=pb.ROLE_USER, content="Summarize.", parts=parts if role == pb.ROLE_USER else ())
    messages = [question] if role == pb.ROLE_USER else [question, pb.ChatMessage(role=role, parts=parts)]
    return pb.GenerateRequest(model_id=model_id, messages=messages, options=pb.GenerationOptions(max_tokens=8))


async def refusal(stub: Stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(request))
    return raised.value


async def test_anthropic_gets_document_blocks_by_base64_and_by_url(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    (model,) = (await stub.ListModels(pb.ListModelsRequest())).models
    assert model.capabilities.documents
    await collect(stub.Generate(reading(document(name="Report"), document(url=URL))))
    (turn,) = posts(anthropic_upstream)[-1]["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "Summarize."},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64},
            "title": "Report",
        },
        {"type": "document", "source": {"type": "url", "url": URL}},
    ]


async def test_openai_gets_file_parts_and_refuses_a_document_url(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    await collect(stub.Generate(reading(document(name="report.pdf"), document())))
    (turn,) = posts(openai_upstream)[-1]["messages"]
    data_url = f"data:application/pdf;base64,{PDF_BASE64}"
    assert turn["content"][1:] == [
        {"type": "file", "file": {"file_data": data_url, "filename": "report.pdf"}},
        {"type": "file", "file": {"file_data": data_url, "filename": "document.pdf"}},
    ]
    sent = len(posts(openai_upstream))
    error = await refusal(stub, reading(document(), document(url=URL)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["messages[0].parts[1]"]
    assert "takes a document's data, not its url" in (error.details() or "")
    assert len(posts(openai_upstream)) == sent


async def test_a_llama_cpp_model_refuses_a_document(stub: Stub, tiny: str) -> None:
    error = await refusal(stub, reading(document(), model_id=tiny))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(error)
    assert (info.reason, fields) == ("DOCUMENTS_UNSUPPORTED", ["messages[0].parts[0]"])


@pytest.mark.parametrize(
    ("parts", "role", "code", "message"),
    [
        ([document(b"GIF89a")], pb.ROLE_USER, grpc.StatusCode.INVALID_ARGUMENT, "the data is no application/pdf file"),
        ([document(media_type="text/plain")], pb.ROLE_USER, grpc.StatusCode.INVALID_ARGUMENT, "application/pdf"),
        ([document(url="http://documents.example/a.pdf")], pb.ROLE_USER, grpc.StatusCode.INVALID_ARGUMENT, "https"),
        ([document()], pb.ROLE_ASSISTANT, grpc.StatusCode.INVALID_ARGUMENT, "documents go in user messages only"),
        ([document()] * (MAX_DOCUMENTS + 1), pb.ROLE_USER, grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 20"),
    ],
)
async def test_documents_against_the_rules_are_refused_before_anything_is_sent(
    stub: Stub,
    anthropic_upstream: FakeAnthropic,
    parts: list[cpb.ContentPart],
    role: pb.Role.ValueType,
    code: grpc.StatusCode,
    message: str,
) -> None:
    await load(stub, anthropic_upstream)
    error = await refusal(stub, reading(*parts, role=role))
    assert error.code() == code
    assert message in (error.details() or "")
    assert posts(anthropic_upstream) == []


async def test_door_carries_documents_across_dialects(
    doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    block: Any = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64},
        "title": "report.pdf",
    }
    async with async_anthropic_client(doors) as client:
        await client.messages.create(
            model="gpt", max_tokens=8, messages=[{"role": "user", "content": [block, {"type": "text", "text": "?"}]}]
        )
    file_part: Any = {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF_BASE64}", "filename": "report.pdf"},
    }
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(
            model="claude", max_tokens=8, messages=[{"role": "user", "content": [file_part]}]
        )
    (to_openai,) = posts(openai_upstream)[-1]["messages"]
    assert to_openai["content"] == [file_part, {"type": "text", "text": "?"}]
    (to_anthropic,) = posts(anthropic_upstream)[-1]["messages"]
    assert to_anthropic["content"] == [block]


@pytest.mark.parametrize(
    ("extra", "source", "field"),
    [
        ({"context": "From 2024."}, None, "messages[0].content[0].context"),
        ({"citations": {"enabled": True}}, None, "messages[0].content[0].citations.enabled"),
        ({}, {"type": "text", "media_type": "text/plain", "data": "Plain."}, "messages[0].content[0].source.type"),
    ],
)
async def test_door_refuses_what_a_document_block_asks_that_cannot_be_carried(
    doors: Doors, anthropic_upstream: FakeAnthropic, extra: dict[str, Any], source: Any, field: str
) -> None:
    await load_hosted(doors, anthropic_upstream)
    base64_source = {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64}
    block: Any = {"type": "document", "source": source or base64_source, **extra}
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.BadRequestError, match=field.replace("[", r"\[").replace("]", r"\]")):
            await client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": [block]}])
    assert posts(anthropic_upstream) == []


async def test_door_refuses_an_openai_file_by_id(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    await load_hosted(doors, openai_upstream)
    part: Any = {"type": "file", "file": {"file_id": "file-123"}}
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content\[0\]\.file\.file_id"):
            await client.chat.completions.create(
                model="m", max_tokens=8, messages=[{"role": "user", "content": [part]}]
            )


async def test_sdk_sends_a_document_from_a_file(
    server: WarpcoreServer, anthropic_upstream: FakeAnthropic, tmp_path: Path
) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF)
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        (model,) = await client.list_models()
        assert model.capabilities is not None
        assert model.capabilities.documents
        message = Message("user", "Summarize.", parts=(Document.from_path(path, cache="short"),))
        await client.generate("m", messages=[message])
    (turn,) = posts(anthropic_upstream)[-1]["messages"]
    assert turn["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64},
        "title": "report.pdf",
        "cache_control": {"type": "ephemeral"},
    }
