"""Images through the HTTP door: Anthropic `image` blocks (base64 or URL) and OpenAI `image_url` parts (data URL or
https URL) reach each provider in the form its API documents, in order with the text; a malformed image, one the
domain refuses and one over a limit get the dialect's error naming the part, before anything goes upstream; a local
model with a multimodal projector gives the door's clients the gRPC API's text for the same image."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

import anthropic
import grpc
import openai
import pytest

from tests.conftest import serving_doors
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from tests.local_images_support import MMPROJ, generated, image, load_request, looking
from tests.tiny_projector import png, write_seeing_models
from warpcore.server.core.bounds import MAX_IMAGE_BYTES, MAX_IMAGES
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

PNG = png(1)
PNG_BASE64 = base64.b64encode(PNG).decode()
DATA_URL = f"data:image/png;base64,{PNG_BASE64}"
HTTPS_URL = "https://images.example/cat.png"
Messages = list[dict[str, Any]]


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seeing_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


def anthropic_image(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": source}


def openai_image(url: str, **extra: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


BASE64_SOURCE = {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}
URL_SOURCE = {"type": "url", "url": HTTPS_URL}
# The same turn in each dialect: an image first, then text, a URL image and text again.
ANTHROPIC_TURN = [anthropic_image(BASE64_SOURCE), text("Compare with"), anthropic_image(URL_SOURCE), text("Which?")]
OPENAI_TURN = [openai_image(DATA_URL, detail="low"), text("Compare with"), openai_image(HTTPS_URL), text("Which?")]


def upstream_turn(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """ANTHROPIC_TURN as the upstream's API documents it."""
    if isinstance(upstream, FakeOpenAI):
        return [openai_image(DATA_URL), text("Compare with"), openai_image(HTTPS_URL), text("Which?")]
    return ANTHROPIC_TURN


async def anthropic_call(doors: Doors, messages: Messages, model: str = "m", **options: Any) -> str:
    async with async_anthropic_client(doors) as client:
        answer = await client.messages.create(model=model, max_tokens=8, messages=cast(Any, messages), **options)
    return "".join(block.text for block in answer.content if isinstance(block, anthropic.types.TextBlock))


async def openai_call(doors: Doors, messages: Messages, model: str = "m", **options: Any) -> str:
    async with async_openai_client(doors) as client:
        completion = await client.chat.completions.create(
            model=model, max_tokens=8, messages=cast(Any, messages), **options
        )
    return completion.choices[0].message.content or ""


async def test_images_of_either_sdk_reach_each_provider_in_order(hosted: Doors, upstream: FakeUpstream) -> None:
    await anthropic_call(hosted, [{"role": "user", "content": ANTHROPIC_TURN}])
    from_anthropic = upstream.requests[-1].body
    await openai_call(hosted, [{"role": "user", "content": OPENAI_TURN}])
    from_openai = upstream.requests[-1].body
    for sent in (from_anthropic, from_openai):
        assert sent is not None
        assert sent["messages"][-1] == {"role": "user", "content": upstream_turn(upstream)}


async def test_text_before_the_first_image_and_tool_results_keep_their_place(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    call = {"type": "tool_use", "id": "call_1", "name": "look", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "call_1", "content": "a photo"}
    tool = {"name": "look", "input_schema": {"type": "object", "properties": {}}}
    messages: Messages = [
        {"role": "user", "content": "Look"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result, text("It is"), text(" this:"), anthropic_image(URL_SOURCE)]},
    ]
    await anthropic_call(hosted, messages, tools=[tool])
    sent = upstream.requests[-1].body
    assert sent is not None
    if isinstance(upstream, FakeOpenAI):
        assert sent["messages"][-2]["role"] == "tool"
        words = [text("It is"), text(" this:")]
        assert sent["messages"][-1] == {"role": "user", "content": [*words, openai_image(HTTPS_URL)]}
    else:
        assert sent["messages"][-1]["content"] == [result, text("It is"), text(" this:"), anthropic_image(URL_SOURCE)]


def many(image_part: dict[str, Any]) -> list[dict[str, Any]]:
    """Text, then one image more than a request may carry: the last is part MAX_IMAGES + 1 of the turn."""
    return [text("Look"), *[image_part] * (MAX_IMAGES + 1)]


LAST = f"messages[0].content[{MAX_IMAGES + 1}]"
TOOL_TURNS: Messages = [
    {"role": "user", "content": "Look"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "look", "input": {}}]},
]


@pytest.mark.parametrize(
    ("messages", "status", "field"),
    [
        (
            [{"role": "user", "content": [text("Hi"), anthropic_image({**BASE64_SOURCE, "data": "not base64!"})]}],
            400,
            "messages[0].content[1].source.data",
        ),
        (
            [{"role": "user", "content": [anthropic_image({"type": "file", "file_id": "f"})]}],
            400,
            "messages[0].content[0].source.type",
        ),
        (
            [{"role": "user", "content": [anthropic_image({"type": "url", "url": "http://images.example/a.png"})]}],
            400,
            "messages[0].content[0]",
        ),
        (
            [{"role": "user", "content": [anthropic_image({**BASE64_SOURCE, "media_type": "image/bmp"})]}],
            400,
            "messages[0].content[0]",
        ),
        (
            [*TOOL_TURNS, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": [
                anthropic_image(BASE64_SOURCE)]}]}],
            400,
            "messages[2].content[0].content[0].type",
        ),
        (  # the domain's message 3 (after the tool turn) is the client's message 2
            [*TOOL_TURNS, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}, text("See"),
                anthropic_image({"type": "url", "url": "http://images.example/a.png"})]}],
            400,
            "messages[2].content[2]",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [anthropic_image(URL_SOURCE)]}],
            400,
            "messages[1].content[0]",
        ),
        ([{"role": "user", "content": many(anthropic_image(URL_SOURCE))}], 413, LAST),
    ],
)  # fmt: skip
async def test_bad_anthropic_images_are_refused_naming_the_part(
    hosted: Doors, upstream: FakeUpstream, messages: Messages, status: int, field: str
) -> None:
    sent = len(upstream.requests)
    with pytest.raises(anthropic.APIStatusError) as failure:
        await anthropic_call(hosted, messages)
    assert failure.value.status_code == status
    assert failure.value.type == ("invalid_request_error" if status == 400 else "request_too_large")
    # The path, its colon, and words said of it, as the API's own read (a tester's finding: "...[20]: is image ...")
    message = cast(dict[str, Any], failure.value.body)["error"]["message"]
    assert message.startswith(f"{field}: "), message
    assert not message.startswith(f"{field}: is "), message
    assert len(upstream.requests) == sent  # refused before anything went upstream


@pytest.mark.parametrize(
    ("content", "status", "param"),
    [
        ([text("Hi"), openai_image("data:image/png," + PNG_BASE64)], 400, "messages[0].content[1].image_url.url"),
        ([text("Hi"), openai_image("data:image/png;base64,@@@@")], 400, "messages[0].content[1].image_url.url"),
        ([openai_image("data:;base64," + PNG_BASE64)], 400, "messages[0].content[0].image_url.url"),
        ([openai_image(HTTPS_URL, detail="ultra")], 400, "messages[0].content[0].image_url.detail"),
        ([text("Hi"), openai_image("http://images.example/a.png")], 400, "messages[0].content[1]"),
        (many(openai_image(DATA_URL)), 413, LAST),
    ],
)
async def test_bad_openai_images_are_refused_naming_the_part(
    hosted: Doors, upstream: FakeUpstream, content: list[dict[str, Any]], status: int, param: str
) -> None:
    sent = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as failure:
        await openai_call(hosted, [{"role": "user", "content": content}])
    assert (failure.value.status_code, failure.value.type, failure.value.param) == (
        status,
        "invalid_request_error",
        param,
    )
    assert len(upstream.requests) == sent


async def test_an_image_in_an_openai_assistant_system_or_developer_turn_is_refused_naming_it(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """A tester's finding: a system or developer message with an image was refused naming its content, for having
    "parts", which OpenAI's users never heard of; the README says an image outside a user turn is named."""
    sent = len(upstream.requests)
    for role in ("assistant", "system", "developer"):
        turn = {"role": role, "content": [text("Look:"), openai_image(DATA_URL)]}
        with pytest.raises(openai.BadRequestError) as failure:
            await openai_call(hosted, [{"role": "user", "content": "Hi"}, turn])
        assert failure.value.param == "messages[1].content[1]", role
        assert isinstance(failure.value.body, dict)
        assert failure.value.body["message"] == "messages[1].content[1]: images go in user messages only", role
    assert len(upstream.requests) == sent


async def test_a_refusal_of_an_image_reads_whole_in_each_dialect(hosted: Doors, upstream: FakeUpstream) -> None:
    """A sweep's findings: OpenAI's path, a colon, then "is not valid base64"; an empty data URL refused as if no
    data and no URL were given; an image in Anthropic's system prompt refused in words of its own, where every other
    image outside a user turn is refused as images going in user messages only."""
    sent = len(upstream.requests)
    said = []
    for url in ("data:image/png;base64,@@@@", "data:image/png;base64,", "DATA:image/png;BASE64,"):
        with pytest.raises(openai.BadRequestError) as from_openai:
            await openai_call(hosted, [{"role": "user", "content": [openai_image(url)]}])
        said.append(cast(dict[str, Any], from_openai.value.body)["message"])
    options: list[tuple[Messages, dict[str, Any]]] = [
        ([{"role": "user", "content": [anthropic_image({**BASE64_SOURCE, "data": ""})]}], {}),
        ([{"role": "user", "content": "Hi"}], {"system": [text("Look:"), anthropic_image(BASE64_SOURCE)]}),
    ]
    for messages, extra in options:
        with pytest.raises(anthropic.BadRequestError) as from_anthropic:
            await anthropic_call(hosted, messages, **extra)
        said.append(cast(dict[str, Any], from_anthropic.value.body)["error"]["message"])
    assert said == [
        "messages[0].content[0].image_url.url is not valid base64",
        "messages[0].content[0].image_url.url: the data URL holds no data",
        "messages[0].content[0].image_url.url: the data URL holds no data",
        "messages[0].content[0].source.data: the base64 data is empty",
        "system[1]: images go in user messages only",
    ]
    assert len(upstream.requests) == sent


@pytest.mark.parametrize(
    "url",
    [
        f"DATA:image/png;base64,{PNG_BASE64}",
        f"Data:image/png;base64,{PNG_BASE64}",
        f"data:image/png;BASE64,{PNG_BASE64}",
        f"data:IMAGE/PNG;charset=utf-8;base64,{PNG_BASE64}",  # RFC 2397's parameters: taken, and left out
        f'data:image/png;name="cat.png";Base64,{PNG_BASE64}',
    ],
)
async def test_a_data_url_is_read_as_rfc_2397_writes_it(hosted: Doors, upstream: FakeUpstream, url: str) -> None:
    """A tester's finding: a URL's scheme and the `base64` token are case-insensitive, and a media type may carry
    parameters; each was refused."""
    await openai_call(hosted, [{"role": "user", "content": [openai_image(url)]}])
    sent = upstream.requests[-1].body
    assert sent is not None
    expected = openai_image(DATA_URL) if isinstance(upstream, FakeOpenAI) else anthropic_image(BASE64_SOURCE)
    assert sent["messages"][-1]["content"] == [expected]


async def test_an_https_url_s_scheme_is_case_insensitive(hosted: Doors, upstream: FakeUpstream) -> None:
    url = "HTTPS://images.example/cat.png"
    await openai_call(hosted, [{"role": "user", "content": [openai_image(url)]}])
    await anthropic_call(hosted, [{"role": "user", "content": [anthropic_image({"type": "url", "url": url})]}])
    for request in upstream.requests[-2:]:
        assert request.body is not None
        part = request.body["messages"][-1]["content"][0]
        assert part == (
            openai_image(url) if isinstance(upstream, FakeOpenAI) else anthropic_image({"type": "url", "url": url})
        )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "https://ex\u00e4mple.com/a.png",
            "is not ASCII: write its host as IDNA (xn--...) and percent-encode the rest",
        ),
        ("https://images.example/a b.png", "holds a space or a control character: percent-encode it (%20)"),
        ("https://images.example:99999/a.png", "is not a URL: it names no host, or a port that is not a number"),
        ("http://images.example/a.png", "must be https://"),
        ("ftp://images.example/a.png", "must be https://"),
    ],
)
async def test_an_image_url_that_is_not_one_is_refused_saying_why(hosted: Doors, url: str, why: str) -> None:
    with pytest.raises(openai.BadRequestError) as from_openai:
        await openai_call(hosted, [{"role": "user", "content": [text("Hi"), openai_image(url)]}])
    with pytest.raises(anthropic.BadRequestError) as from_anthropic:
        await anthropic_call(hosted, [{"role": "user", "content": [anthropic_image({"type": "url", "url": url})]}])
    assert from_openai.value.param == "messages[0].content[1]"
    assert cast(dict[str, Any], from_openai.value.body)["message"] == f"messages[0].content[1]: the image's url {why}"
    assert cast(dict[str, Any], from_anthropic.value.body)["error"]["message"] == (
        f"messages[0].content[0]: the image's url {why}"
    )


async def test_an_image_over_the_size_limit_is_413_in_each_dialect(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    # The door's default body limit (4 MiB) is below an image at the limit in base64: raised here to let one in.
    data = base64.b64encode(bytes(MAX_IMAGE_BYTES + 1)).decode()
    async with serving_doors(server_env, ServingOptions(max_message_bytes=2 * MAX_IMAGE_BYTES)) as doors:
        await load_hosted(doors, openai_upstream)
        sent = len(openai_upstream.requests)
        with pytest.raises(openai.APIStatusError) as from_openai:
            await openai_call(doors, [{"role": "user", "content": [openai_image(f"data:image/png;base64,{data}")]}])
        source = {**BASE64_SOURCE, "data": data}
        with pytest.raises(anthropic.APIStatusError) as from_anthropic:
            await anthropic_call(doors, [{"role": "user", "content": [text("Hi"), anthropic_image(source)]}])
    assert (from_openai.value.status_code, from_openai.value.param) == (413, "messages[0].content[0]")
    assert (from_anthropic.value.status_code, from_anthropic.value.type) == (413, "request_too_large")
    # After the path and its colon, as the API's own messages read (a tester's finding: "...content[1]: is 5242881")
    assert cast(dict[str, Any], from_anthropic.value.body)["error"]["message"] == (
        f"messages[0].content[1]: {MAX_IMAGE_BYTES + 1} bytes; each image may be at most {MAX_IMAGE_BYTES}"
    )
    assert cast(dict[str, Any], from_openai.value.body)["message"] == (
        f"messages[0].content[0] is {MAX_IMAGE_BYTES + 1} bytes; each image may be at most {MAX_IMAGE_BYTES}"
    )
    assert len(openai_upstream.requests) == sent


async def test_a_local_model_reads_the_image_of_either_sdk_as_the_grpc_api_does(doors: Doors) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await stub.LoadModel(load_request(MMPROJ))
        expected, _, _ = await generated(stub, looking(image(1)))
        other, _, _ = await generated(stub, looking(image(2)))
        counted = await stub.CountTokens(pb.CountTokensRequest(request=looking(image(1))))
    assert expected
    assert expected != other  # the text depends on the image
    question = text("What is this?")
    from_openai = await openai_call(
        doors, [{"role": "user", "content": [question, openai_image(DATA_URL)]}], "seeing", temperature=0
    )
    from_anthropic = await anthropic_call(
        # The anthropic SDK has no `temperature` argument any more; the API still takes the field.
        doors,
        [{"role": "user", "content": [question, anthropic_image(BASE64_SOURCE)]}],
        "seeing",
        extra_body={"temperature": 0},
    )
    assert from_openai == from_anthropic == expected
    async with async_anthropic_client(doors) as client:
        count = await client.messages.count_tokens(
            model="seeing",
            messages=cast(Any, [{"role": "user", "content": [question, anthropic_image(BASE64_SOURCE)]}]),
        )
    assert count.input_tokens == counted.count.prompt_tokens  # the image's embeddings counted, as over gRPC
    with pytest.raises(openai.BadRequestError) as url_image:
        await openai_call(doors, [{"role": "user", "content": [question, openai_image(HTTPS_URL)]}], "seeing")
    assert (url_image.value.param, url_image.value.code) == ("messages[0].content[1]", "image_url_unsupported")
