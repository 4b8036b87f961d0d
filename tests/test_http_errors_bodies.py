"""Refusals and failures of the HTTP door as each official SDK parses it: bodies that are not JSON objects, too large,
too deep, of the wrong content type or charset, or holding half a surrogate pair."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import httpx2
import pytest

from tests.conftest import serving_doors
from tests.fakes.base import FakeUpstream
from tests.http_door import (
    base_url,
)
from tests.http_errors_support import OPENAI_MESSAGES
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
async def test_a_body_a_web_page_could_send_cross_site_is_415_and_goes_nowhere(
    hosted: Doors, upstream: FakeUpstream, content_type: str
) -> None:
    """A tester's finding: a page in a browser could POST a text/plain body (no preflight asked) that the door read
    as JSON, spending the server's key; with no token set, by default."""
    body = json.dumps({"model": "m", "max_tokens": 4, "messages": OPENAI_MESSAGES}).encode()
    headers = {"content-type": content_type} if content_type else {}
    sent = len(upstream.requests)
    async with httpx2.AsyncClient(base_url=base_url(hosted)) as client:
        refused = await client.post("/v1/chat/completions", content=body, headers=headers)
        anthropic_refused = await client.post("/v1/messages", content=body, headers=headers)
        taken = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json; charset=utf-8"}
        )
    assert refused.status_code == 415
    assert refused.json()["error"]["message"].endswith("send JSON, with Content-Type: application/json")
    assert refused.json()["error"]["param"] is None  # no member of the body: the body itself
    # Anthropic's message begins with the path of what is refused, as the API's own do (a tester's finding).
    assert (anthropic_refused.status_code, anthropic_refused.json()["error"]["message"][:20]) == (
        415,
        "request: the body is",
    )
    assert taken.status_code == 200
    assert len(upstream.requests) == sent + 1


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_bodies_that_are_not_json_objects_are_400_and_too_large_413(
    path: str, server_env: dict[str, str]
) -> None:
    async with (
        serving_doors(server_env, ServingOptions(max_message_bytes=1000)) as doors,
        httpx2.AsyncClient(base_url=base_url(doors)) as client,
    ):
        not_json = await client.post(path, content=b"{nope", headers={"content-type": "application/json"})
        not_object = await client.post(path, json=[1])
        too_large = await client.post(path, json={"messages": ["x" * 2000]})
        no_route = await client.get("/v1/nothing")
        wrong_method = await client.get(path)
    assert [response.status_code for response in (not_json, not_object, too_large, no_route, wrong_method)] == [
        400,
        400,
        413,
        404,
        405,
    ]
    assert "not valid JSON" in not_json.text
    assert wrong_method.headers["Allow"] == "POST"
    if path == "/v1/messages":
        assert too_large.json()["error"]["type"] == "request_too_large"
        # The path, then words said of it (a tester's finding: "request: the request body is larger ...")
        assert too_large.json()["error"]["message"] == "request: the body is larger than 1000 bytes"
        assert not_json.json()["error"]["message"] == "request: the body is not valid JSON"
    else:
        assert too_large.json()["error"]["message"] == "the request body is larger than 1000 bytes"
        assert too_large.json()["error"]["param"] is None  # OpenAI's names a member of the body, or nothing


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/x"])
async def test_an_error_takes_the_routes_dialect_and_a_shared_routes_from_the_client(path: str, doors: Doors) -> None:
    """An OpenAI route answers in OpenAI's shape even to a client that sends anthropic-version (some proxies send
    it everywhere); the routes both SDKs call answer in the shape of the client that sent the request."""
    anthropic_route = path == "/v1/messages"
    shared = path == "/v1/x"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        for headers in ({}, {"anthropic-version": "2023-06-01"}):
            body: dict[str, object] = {"model": "nope", "input": "hi"}
            if path != "/v1/embeddings":
                body = {"model": "nope", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            response = await client.post(path, json=body, headers=headers)
            assert response.status_code == 404, response.text
            anthropic_shape = response.json().get("type") == "error"
            assert anthropic_shape == (anthropic_route or (shared and bool(headers))), (headers, response.text)


# Per route, a raw JSON body with HALF in one string, and that string's field: HALF is an escape of half a UTF-16
# surrogate pair, or a whole pair (one character) in the body that is let through.
UNPAIRED = {
    "/v1/chat/completions": (b'{"model":"m","messages":[{"role":"user","content":"hi HALF"}]}', "messages[0].content"),
    "/v1/messages": (
        b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":"HALF"}',
        "system",
    ),
    "/v1/messages/count_tokens": (
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a HALF b"}]}]}',
        "messages[0].content[0].text",
    ),
    "/v1/embeddings": (b'{"model":"m","input":["ok","HALF"]}', "input[1]"),
}


@pytest.mark.parametrize("path", list(UNPAIRED))
@pytest.mark.parametrize("half", [b"\\ud83d", b"\\uDE00", b"\\ude00\\ud83d"])
async def test_an_unpaired_surrogate_escape_is_400_naming_its_field(path: str, half: bytes, doors: Doors) -> None:
    body, field = UNPAIRED[path]
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        headers = {"content-type": "application/json"}
        refused = await client.post(path, content=body.replace(b"HALF", half), headers=headers)
        passed = await client.post(path, content=body.replace(b"HALF", b"\\ud83d\\ude00"), headers=headers)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert "unpaired UTF-16 surrogate" in error["message"]
    assert error["message"].startswith(field)
    assert error["message"].count(field) == 1, error["message"]  # named once, in either dialect
    if path in ("/v1/chat/completions", "/v1/embeddings"):
        assert error["param"] == field
    # Paired, the same escapes spell one character: the body goes on, to the unknown model's 404.
    assert passed.status_code == 404, passed.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"])
async def test_a_number_of_more_digits_than_python_reads_is_400_saying_so(path: str, doors: Doors) -> None:
    body = b'{"model":"m","max_tokens":1' + b"0" * 5000 + b"}"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "an integer of more digits than any field takes" in refused.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"])
async def test_a_body_nested_beyond_the_parsers_bound_is_400(path: str, doors: Doors) -> None:
    deep = b'{"model":"m","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=deep, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "nests arrays and objects too deeply" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/messages/count_tokens"]
)
@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"content-type": "application/json; charset=bogus"}, "'bogus' is not one this server takes"),
        ({"content-type": "application/json; charset=base64"}, "'base64' is not one this server takes"),
        ({"content-type": "application/json; charset=punycode"}, "'punycode' is not one this server takes"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, "not the gzip stream"),
        ({"content-type": "application/json", "content-encoding": "deflate"}, "not the deflate stream"),
    ],
    ids=["unknown charset", "no text charset", "slow codec", "not gzip", "not deflate"],
)
async def test_a_body_that_does_not_decode_as_its_headers_say_is_400(
    path: str, headers: dict[str, str], says: str, doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    if path == "/v1/embeddings":
        body = b'{"model":"m","input":"hi"}'
    if path == "/v1/messages/count_tokens":
        body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=body, headers=headers)
        served = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["error"]["message"]
    assert served.status_code == 404, served.text  # the same body, as it says: up to the unknown model
    # Answered, and not logged as an error besides (served came on the same connection, after its rest was read).
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("charset", ["utf-7", "unicode_escape", "punycode", "latin-1", "cp1252"])
async def test_a_charset_that_is_not_unicodes_is_400_unread(charset: str, doors: Doors) -> None:
    """UTF-7's +2AA- and a unicode_escape \\ud800 spell an unpaired surrogate where no JSON escape shows it (a local
    model's tokenizer failed on it); Python decodes punycode in time that grows with the square of the body, on the
    event loop: a tester's 400 KiB body held every call of both doors for 21 s. A megabyte of it, decoded, would
    outlast this test's time limit."""
    body = b"a-" + b"99999" * 200_000
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client, asyncio.timeout(30):
        refused = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": f"application/json; charset={charset}"}
        )
    assert refused.status_code == 400, refused.text
    assert f"charset {charset!r} is not one this server takes" in refused.json()["error"]["message"]


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "UTF-32BE"])
async def test_a_body_in_another_unicode_encoding_is_read(charset: str, doors: Doors) -> None:
    body = '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"caf\u00e9 \U0001f600"}]}'
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        served = await client.post(
            "/v1/chat/completions",
            content=body.encode(charset),
            headers={"content-type": f"application/json; charset={charset}"},
        )
    assert served.status_code == 404, served.text  # read, up to the unknown model


@pytest.mark.parametrize(
    ("path", "charset"),
    [("/v1/chat/completions", None), ("/v1/messages", "utf-8"), ("/v1/responses", "UTF8")],
)
async def test_a_utf8_body_may_start_with_a_byte_order_mark(path: str, charset: str | None, doors: Doors) -> None:
    """An outside tester's finding: a body saved by a Windows editor starts with EF BB BF, which RFC 8259 lets a
    parser ignore, and was 400 "not valid JSON"."""
    said = {"input": "hi"} if path == "/v1/responses" else {"messages": [{"role": "user", "content": "hi"}]}
    body = {"model": "m", **said} | ({} if path == "/v1/responses" else {"max_tokens": 5})
    content_type = "application/json" + (f"; charset={charset}" if charset else "")
    headers = {"content-type": content_type, "anthropic-version": "2023-06-01"}
    async with httpx2.AsyncClient(base_url=base_url(doors), headers=headers) as client:
        served = await client.post(path, content=b"\xef\xbb\xbf" + json.dumps(body).encode())
        twice = await client.post(path, content=b"\xef\xbb\xbf" * 2 + json.dumps(body).encode())
    assert served.status_code == 404, served.text  # read, up to the unknown model
    assert twice.status_code == 400  # one mark starts the text; a second is a character before the JSON


# Per route, a body whose assistant turn carries tool-call arguments as JSON text, and that text's field.
ARGUMENTS_TEXT: dict[str, tuple[Callable[[str], dict[str, object]], str]] = {
    "/v1/chat/completions": (
        lambda arguments: {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    "/v1/responses": (
        lambda arguments: {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": arguments},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        },
        "input[1].arguments",
    ),
}


@pytest.mark.parametrize("path", list(ARGUMENTS_TEXT))
@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ('{"x":' + "[" * 2000 + "]" * 2000 + "}", "nested deeper than"),
        ('{"x": "\\ud800"}', "unpaired UTF-16 surrogate"),
        ('{"x": NaN}', "NaN"),
    ],
    ids=["deep", "surrogate", "NaN"],
)
async def test_tool_call_arguments_text_is_read_as_the_grpc_doors_is(
    path: str, arguments: str, said: str, doors: Doors
) -> None:
    """A tester's finding: arguments nested 2,000 deep or holding half a surrogate pair were a 500 (a RecursionError,
    a UnicodeEncodeError), where the same text over gRPC is INVALID_ARGUMENT naming its field."""
    body, field = ARGUMENTS_TEXT[path]
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, json=body(arguments))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert said in error["message"]
    assert error["param"] == field
