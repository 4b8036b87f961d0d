"""Images in chat turns: each hosted wire protocol receives them in the form its API documents (checked on the
received request body, the real SDKs against the fakes); limits are checked before anything is sent, naming the
part. Local models: test_local_images.py and test_local_image_refusals.py."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, rich_details, serving
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
from warpcore.server.core.bounds import MAX_IMAGE_BYTES, MAX_IMAGES
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
URL = "https://images.example/cat.png"
PNG_BASE64 = base64.b64encode(PNG).decode()


def image(data: bytes = PNG, media_type: str = "image/png") -> cpb.ContentPart:
    return cpb.ContentPart(image=cpb.ImagePart(data=data, media_type=media_type))


def linked(url: str = URL) -> cpb.ContentPart:
    return cpb.ContentPart(image=cpb.ImagePart(url=url))


def looking(*parts: cpb.ContentPart, model_id: str = "m", content: str = "What is this?") -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id,
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=content, parts=parts)],
        options=pb.GenerationOptions(max_tokens=8, temperature=0),
    )


async def refusal(stub: Stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(request))
    return raised.value


async def test_openai_gets_image_url_parts_with_data_urls_for_bytes(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    text, _ = await collect(stub.Generate(looking(cpb.ContentPart(text="Be precise."), image(), linked())))
    assert text == openai_upstream.script.text
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "text", "text": "Be precise."},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}},
                {"type": "image_url", "image_url": {"url": URL}},
            ],
        }
    ]


async def test_anthropic_gets_image_blocks_by_base64_and_by_url(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    request = looking(image(media_type="image/png"), linked())
    request.messages.append(pb.ChatMessage(role=pb.ROLE_USER, content="And this one?", parts=[image(b"GIF89a")]))
    request.messages[1].parts[0].image.media_type = "Image/GIF"  # media types are case-insensitive: sent lowered
    text, _ = await collect(stub.Generate(request))
    assert text == anthropic_upstream.script.text
    counted = await stub.CountTokens(pb.CountTokensRequest(request=request))
    assert counted.count.prompt_tokens == anthropic_upstream.script.prompt_tokens
    expected = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
                {"type": "image", "source": {"type": "url", "url": URL}},
                # The next user turn, merged into this one: the API wants turns to alternate.
                {"type": "text", "text": "And this one?"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/gif",
                        "data": base64.b64encode(b"GIF89a").decode(),
                    },
                },
            ],
        }
    ]
    generate, count = (
        next(r.body for r in anthropic_upstream.requests if r.path == path)
        for path in ("/v1/messages", "/v1/messages/count_tokens")
    )
    assert generate is not None
    assert count is not None
    assert generate["messages"] == count["messages"] == expected


@pytest.mark.parametrize(
    ("parts", "code", "field"),
    [
        ([image(media_type="image/bmp")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([cpb.ContentPart(text="x"), image(b"")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[1]"),
        ([linked("http://images.example/cat.png")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([linked("file:///etc/passwd")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([cpb.ContentPart()], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        # Bytes of no image, and an image of another type than its media_type says.
        ([image(b"garbage")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([image(b"\xff\xd8\xff\xe0" + bytes(64))], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([image(PNG, "image/webp")], grpc.StatusCode.INVALID_ARGUMENT, "messages[0].parts[0]"),
        ([image()] * (MAX_IMAGES + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, f"messages[0].parts[{MAX_IMAGES}]"),
    ],
)
async def test_bad_images_are_refused_before_anything_is_sent(
    stub: Stub, openai_upstream: FakeOpenAI, parts: list[cpb.ContentPart], code: grpc.StatusCode, field: str
) -> None:
    await load(stub, openai_upstream)
    sent_before = len(openai_upstream.requests)
    error = await refusal(stub, looking(*parts))
    assert error.code() == code
    assert rich_details(error)[1] == [field]
    assert len(openai_upstream.requests) == sent_before


async def test_images_only_in_user_turns_and_no_parts_in_system_turns(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    request = looking()
    request.messages.append(pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="A cat.", parts=[image()]))
    error = await refusal(stub, request)
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["messages[1].parts[0]"])
    request = looking()
    request.messages.insert(
        0, pb.ChatMessage(role=pb.ROLE_SYSTEM, content="Be brief.", parts=[cpb.ContentPart(text="x")])
    )
    error = await refusal(stub, request)
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["messages[0].parts"])
    # A tester's finding: a system message's image was refused as parts, where the README names the part.
    request = looking()
    request.messages.insert(0, pb.ChatMessage(role=pb.ROLE_SYSTEM, content="Be brief.", parts=[image()]))
    error = await refusal(stub, request)
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["messages[0].parts[0]"])
    assert error.details() == "messages[0].parts[0]: images go in user messages only"


async def test_an_image_url_s_scheme_is_case_insensitive_and_a_url_that_is_not_one_says_why(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: HTTPS:// was refused as not https://, and so were a space and a host not in ASCII."""
    await load(stub, openai_upstream)
    await collect(stub.Generate(looking(linked("HTTPS://images.example/cat.png"))))
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "HTTPS://images.example/cat.png"},
    }
    sent = len(openai_upstream.requests)
    for url, why in [
        ("https://images.example/a b.png", "holds a space or a control character: percent-encode it (%20)"),
        (
            "https://ex\u00e4mple.com/a.png",
            "is not ASCII: write its host as IDNA (xn--...) and percent-encode the rest",
        ),
        ("https:///a.png", "is not a URL: it names no host, or a port that is not a number"),
    ]:
        error = await refusal(stub, looking(linked(url)))
        assert error.details() == f"messages[0].parts[0]: the image's url {why}"
    assert len(openai_upstream.requests) == sent


async def test_an_image_over_the_size_limit_is_refused(
    server_env: Mapping[str, str], openai_upstream: FakeOpenAI
) -> None:
    options = ServingOptions(max_message_bytes=2 * MAX_IMAGE_BYTES)
    async with serving(server_env, options) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, openai_upstream)
        error = await refusal(stub, looking(cpb.ContentPart(text="x"), image(b"\0" * (MAX_IMAGE_BYTES + 1))))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rich_details(error)[1] == ["messages[0].parts[1]"]
        assert not any(request.path == "/v1/chat/completions" for request in openai_upstream.requests)
