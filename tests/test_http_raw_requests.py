"""What a hostile HTTP client sends that no SDK would: bytes that are no UTF-8 in a token, a body declared larger
than the limit and never sent, `Expect: 100-continue` for a request that will be refused, numbers beyond a field's
type. Raw sockets, as an SDK cannot send these."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import serving_doors
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted, openai_messages
from warpcore.server.core import bounds
from warpcore.server.core.bounds import quoted
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions

TOKEN = "door-token-0123456789"
LIMIT = 1000
ANSWER_SECONDS = 5.0  # far more than any of these answers takes; the old code never answered some


@pytest.fixture
async def guarded(server_env: dict[str, str]) -> AsyncIterator[Doors]:
    async with serving_doors(server_env, ServingOptions(token=TOKEN, max_message_bytes=LIMIT)) as doors:
        yield doors


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def connection(guarded: Doors) -> AsyncIterator[Connection]:
    assert guarded.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.http.port)
    yield reader, writer
    writer.close()


async def exchange(connection: Connection, head: bytes, body: bytes = b"") -> bytes:
    """Send a request's head (and body), and read the first status line the server answers with."""
    reader, writer = connection
    writer.write(head + b"\r\n" + body)
    await writer.drain()
    return await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)


async def answer(connection: Connection, head: bytes, body: bytes = b"") -> tuple[int, dict[str, object]]:
    """The status and JSON body of the final answer to a request."""
    status, _, answered = await reply(connection, head, body)
    return status, answered


async def reply(connection: Connection, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], dict[str, Any]]:
    """The status, headers (names in lower case) and JSON body of the final answer to a request."""
    status = await exchange(connection, head, body)
    reader = connection[0]
    lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_SECONDS)).decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
    length = int(headers["content-length"])
    return (
        int(status.split()[1]),
        headers,
        json.loads(await asyncio.wait_for(reader.readexactly(length), ANSWER_SECONDS)),
    )


def post(path: str, *headers: bytes, length: int = 2) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: localhost", b"Content-Type: application/json", *headers]
    return b"\r\n".join([*lines, f"Content-Length: {length}".encode()]) + b"\r\n"


@pytest.mark.parametrize("header", [b"Authorization: Bearer s3cr\xe9t", b"x-api-key: s3cr\xe9t"])
async def test_a_token_of_bytes_that_are_no_utf8_is_refused_not_a_failure(
    connection: Connection, header: bytes
) -> None:
    status, body = await answer(connection, post("/v1/chat/completions", header), b"{}")
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"  # type: ignore[index]


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(connection: Connection) -> None:
    head = post("/v1/messages", f"x-api-key: {TOKEN}".encode(), length=100 * 1024 * 1024)
    status, body = await answer(connection, head)  # no body follows
    assert status == 413
    assert body["error"]["type"] == "request_too_large"  # type: ignore[index]


@pytest.mark.parametrize(
    ("header", "length", "refusal"),
    [(b"x-api-key: wrong-token", 2, b" 401 "), (f"x-api-key: {TOKEN}".encode(), 100 * 1024 * 1024, b" 413 ")],
)
async def test_expect_continue_is_not_granted_to_a_request_that_will_be_refused(
    connection: Connection, header: bytes, length: int, refusal: bytes
) -> None:
    status = await exchange(connection, post("/v1/messages", header, b"Expect: 100-continue", length=length))
    assert refusal in status  # at once: no "100 Continue" asks for a body only to refuse it


async def test_expect_continue_is_granted_to_a_request_that_will_be_read(connection: Connection) -> None:
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), b"Expect: 100-continue", length=2)
    assert (await exchange(connection, head)).startswith(b"HTTP/1.1 100")
    reader, writer = connection
    await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)  # the blank line that ends the 100
    writer.write(b"{}")  # the body, read: a chat request without its fields
    assert (await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)).startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize(("member", "value"), [("top_k", 2**64 + 1), ("top_k", 2**32), ("n", True)])
async def test_numbers_beyond_a_fields_type_are_400_naming_it(
    connection: Connection, member: str, value: object
) -> None:
    fields = {"model": "absent", "messages": [{"role": "user", "content": "hi"}], member: value}
    raw = json.dumps(fields).encode()
    status, body = await answer(
        connection, post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), length=len(raw)), raw
    )
    assert status == 400
    assert body["error"]["param"] == member  # type: ignore[index]


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounds, "BODY_READ_SECONDS", 0.5)
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), length=100)
    status = await exchange(connection, head, b'{"mo')  # and nothing more
    headers = await asyncio.wait_for(connection[0].readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    assert status.split()[1] == b"408"
    assert b"\r\nConnection: close\r\n" in headers  # the rest of the body is not waited for
    assert b"did not arrive within 0.5 seconds" in await asyncio.wait_for(connection[0].read(300), ANSWER_SECONDS)


@pytest.mark.parametrize("header", [b"x-api-key: ", b"Authorization: Bearer "])
async def test_a_header_too_long_to_read_is_refused_without_echoing_it(
    connection: Connection, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's own answer to a header over its size limit quotes the header: here a credential, which must go
    neither back over the wire nor into the log; the answer has the shape every other refusal has."""
    secret = b"sk-secret-" + b"k" * 10_000
    reader = connection[0]
    status = await exchange(connection, post("/v1/messages", header + secret), b"{}")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    rest = await asyncio.wait_for(reader.read(), ANSWER_SECONDS)  # the connection is closed after it
    assert int(status.split()[1]) == 431
    assert b"sk-secret" not in head + rest
    assert b"\r\nx-request-id: req_" in b"\r\n" + head.lower()
    assert b"\r\nrequest-id: req_" in b"\r\n" + head.lower()
    body = json.loads(rest)
    assert body["type"] == "error", body  # Anthropic's shape...
    assert body["error"]["type"] == "invalid_request_error", body
    assert (body["error"]["param"], body["error"]["code"]) == (None, "request_header_too_large")  # ...and OpenAI's
    assert "8190 bytes" in body["error"]["message"], body  # what the client can act on
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "sk-secret" not in logged


async def test_a_head_that_contradicts_itself_is_a_400_both_sdks_read(connection: Connection) -> None:
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), b"Transfer-Encoding: chunked")
    status, body = await answer(connection, head, b"{}")
    assert status == 400
    assert body["error"]["code"] == "malformed_http_request", body  # type: ignore[index]
    assert body["type"] == "error", body


async def test_a_head_that_does_not_arrive_in_time_closes_its_connection(
    guarded: Doors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that never finishes a head (slowloris) held its connection for an hour, aiohttp's default: at the
    connection's start, and after an answer."""
    monkeypatch.setattr(bounds, "HEAD_READ_SECONDS", 0.3)
    assert guarded.http is not None
    first = await asyncio.open_connection("127.0.0.1", guarded.http.port)
    later = await asyncio.open_connection("127.0.0.1", guarded.http.port)
    status, _ = await answer(
        later, b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nx-api-key: " + TOKEN.encode() + b"\r\n"
    )
    assert status == 200
    for _, writer in (first, later):
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
        await writer.drain()
    for reader, writer in (first, later):
        assert await asyncio.wait_for(reader.read(), ANSWER_SECONDS) == b""  # closed, nothing answered
        writer.close()


@pytest.mark.parametrize(
    "encoding", ["br", "x-foo", "compress", "gzip, x-foo", "gzip, deflate", "gzip\r\nContent-Encoding: x-foo"]
)
async def test_a_body_in_an_encoding_the_server_cannot_decode_is_a_415(connection: Connection, encoding: str) -> None:
    """aiohttp refuses br and zstd, and reads a body in any other encoding it does not know as it is: the door
    refuses them all, stacked ones too (aiohttp undoes one)."""
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), f"Content-Encoding: {encoding}".encode())
    status, body = await answer(connection, head, b"{}")
    assert status == 415
    assert body["error"]["code"] == "unsupported_content_encoding", body  # type: ignore[index]
    # what is taken, in the words of the header (a tester's finding: the message said "gzip'd" only)
    assert "send the body uncompressed, or in gzip or deflate" in body["error"]["message"], body  # type: ignore[index]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZip"])
async def test_a_body_in_gzip_or_deflate_is_read(connection: Connection, encoding: str) -> None:
    raw = json.dumps({"model": "absent", "messages": openai_messages()}).encode()
    sent = gzip.compress(raw) if encoding.lower() == "gzip" else zlib.compress(raw)
    headers = (f"x-api-key: {TOKEN}".encode(), f"Content-Encoding: {encoding}".encode())
    status, body = await answer(connection, post("/v1/chat/completions", *headers, length=len(sent)), sent)
    assert (status, body["error"]["code"]) == (404, "model_not_found"), body  # type: ignore[index]


async def test_a_compressed_body_over_the_limit_once_decoded_is_a_413(connection: Connection) -> None:
    sent = gzip.compress(b" " * 100 * LIMIT + b"{}")
    assert len(sent) < LIMIT
    headers = (f"x-api-key: {TOKEN}".encode(), b"Content-Encoding: gzip")
    status, body = await answer(connection, post("/v1/chat/completions", *headers, length=len(sent)), sent)
    assert (status, body["error"]["message"]) == (413, f"the request body is larger than {LIMIT} bytes")  # type: ignore[index]


async def test_an_empty_content_encoding_is_none(connection: Connection) -> None:
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), b"Content-Encoding: ")
    status, _ = await answer(connection, head, b"{}")
    assert status == 400  # read as it is: the body names no model


async def test_the_head_timeout_cuts_no_answer_that_takes_longer(
    doors: Doors, openai_upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head timeout is aiohttp's keep-alive timeout: it runs while a connection waits for a request, never while
    one is answered. A stream ten times as long as it arrives whole, and the client's next call, on a connection the
    timeout closed meanwhile, is answered too."""
    monkeypatch.setattr(bounds, "HEAD_READ_SECONDS", 0.1)
    await load_hosted(doors, openai_upstream)
    openai_upstream.script = Script(chunks=[f" t{index}" for index in range(10)], delay=0.1)
    async with async_openai_client(doors) as client:
        stream = await client.chat.completions.create(model="m", messages=openai_messages(), stream=True)
        texts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
        assert "".join(text or "" for text in texts) == "".join(f" t{index}" for index in range(10))
        await asyncio.sleep(3 * bounds.HEAD_READ_SECONDS)  # idle past the timeout, which closes the connection
        openai_upstream.script = Script(chunks=["again"])
        once = client.with_options(max_retries=0)  # a reused dead connection would fail: none is reused
        answer = await once.chat.completions.create(model="m", messages=openai_messages())
    assert answer.choices[0].message.content == "again"


async def test_a_stream_to_an_http_1_0_client_ends_with_its_connection(
    guarded: Doors, connection: Connection, openai_upstream: FakeOpenAI
) -> None:
    """HTTP/1.0 has no chunked framing: a client that asked to keep its connection learns where the stream ends
    only when the server closes it."""
    await load_hosted(guarded, openai_upstream)
    openai_upstream.script = Script(chunks=["a", "b"])
    raw = json.dumps({"model": "m", "messages": openai_messages(), "stream": True}).encode()
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), b"Connection: keep-alive", length=len(raw))
    status = await exchange(connection, head.replace(b"HTTP/1.1", b"HTTP/1.0", 1), raw)
    rest = await asyncio.wait_for(connection[0].read(), ANSWER_SECONDS)  # to the end of the connection
    assert status.startswith(b"HTTP/1.0 200")
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_an_expectation_other_than_continue_is_ignored(connection: Connection) -> None:
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode(), b"Expect: 200-ok", b"x-request-id: mine")
    status = await exchange(connection, head, b"{}")
    headers = await asyncio.wait_for(connection[0].readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    assert status.startswith(b"HTTP/1.1 400")  # read and answered as any other: a chat request without its fields
    assert b"\r\nx-request-id: mine\r\n" in status + headers


async def test_a_kept_connection_is_closed_once_the_server_drains(guarded: Doors, connection: Connection) -> None:
    assert guarded.http is not None
    guarded.http.refuse_new()
    head = post("/v1/chat/completions", f"x-api-key: {TOKEN}".encode())
    status = await exchange(connection, head, b"{}")
    headers = await asyncio.wait_for(connection[0].readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    assert status.startswith(b"HTTP/1.1 503")
    assert b"\r\nConnection: close\r\n" in headers  # the client reconnects, to a replica that serves
    await asyncio.wait_for(connection[0].read(), ANSWER_SECONDS)  # and the server closes its end


async def test_a_content_type_the_415_names_is_quoted_and_cut(connection: Connection) -> None:
    """A tester's finding: the 415 echoed a Content-Type as sent, up to the 1024 bytes any message is cut to, where
    every other message quotes a caller's value as Python's repr, cut after 256 characters."""
    content_type = "text/plain; token=tok-SECRET-" + "a" * 2000
    head = post("/v1/messages", f"x-api-key: {TOKEN}".encode()).replace(b"application/json", content_type.encode())
    status, body = await answer(connection, head, b"{}")
    assert status == 415
    assert f"request: the body is {quoted(content_type)}; send JSON" in body["error"]["message"], body  # type: ignore[index]


@pytest.mark.parametrize("path", ["/v1/../v1/chat/completions", "/v1/%E2%80%8D", "/v1/" + "x" * 2000])
async def test_a_path_no_route_takes_is_quoted_and_cut(connection: Connection, path: str) -> None:
    """A tester's finding: a path no route takes was echoed as sent; a zero-width joiner is now shown escaped."""
    status, body = await answer(connection, post(path, f"x-api-key: {TOKEN}".encode()), b"{}")
    assert (status, body["error"]["message"]) == (404, f"no route for {quoted(unquote(path))}")  # type: ignore[index]


@pytest.mark.parametrize("method", ["CONNECT", "PUT"])
@pytest.mark.parametrize(
    ("path", "allow"), [("/health", "GET,HEAD"), ("/v1/models", "GET,HEAD"), ("/v1/messages", "POST")]
)
async def test_a_method_no_route_takes_is_a_405_with_allow(
    connection: Connection, method: str, path: str, allow: str
) -> None:
    """A tester's finding: CONNECT, whose target aiohttp reads as the authority of a proxy's tunnel, got a 401 on the
    open /health, a 415 without a Content-Type and a 404 naming no path with one, where any other method a route
    does not take is a 405 naming the route's methods. /health's 405 is as open as its GET, to probes."""
    token = b"" if path == "/health" else f"x-api-key: {TOKEN}\r\n".encode()
    status, headers, body = await reply(connection, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n".encode() + token)
    assert (status, headers.get("allow")) == (405, allow), body
    # in the route's dialect, its path read from a CONNECT's target too
    prefix = "request: " if path == "/v1/messages" else ""
    assert body["error"]["message"] == f"{prefix}the method {quoted(method)} is not allowed on {quoted(path)}", body
    if method == "CONNECT":  # what follows its head would be a tunnel's bytes: no request of this connection
        assert headers["connection"] == "close"


async def test_a_connect_to_an_authority_is_a_404_naming_it(connection: Connection) -> None:
    head = f"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost\r\nx-api-key: {TOKEN}\r\n".encode()
    status, body = await answer(connection, head)
    assert (status, body["error"]["message"]) == (404, "no route for 'localhost:80'")  # type: ignore[index]


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        ("http://evil.example/v1/models", "127.0.0.1", 403),
        ("http://evil.example@localhost/v1/models", "127.0.0.1", 403),
        ("http://localhost/v1/models", "evil.example", 200),
        ("http://[::1]:8080/v1/models", "localhost", 200),
        ("http://evil.example/health", "localhost", 200),  # open to probes, as with any Host
    ],
)
async def test_the_host_an_absolute_target_names_is_the_one_checked(
    connection: Connection, target: str, host: str, status: int
) -> None:
    """A tester's finding: a target in absolute form (a proxy's) passed the loopback door's check by its Host header,
    which RFC 9112 (section 3.2.2) has a server ignore for the target's own authority."""
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {TOKEN}\r\n".encode()
    assert (await answer(connection, head))[0] == status


async def test_a_generation_for_another_host_in_absolute_form_is_refused(connection: Connection) -> None:
    head = post("http://evil.example/v1/chat/completions", f"x-api-key: {TOKEN}".encode())
    status, body = await answer(connection, head, b"{}")
    assert (status, body["error"]["type"]) == (403, "permission_error"), body  # type: ignore[index]
    assert "'evil.example'" in body["error"]["message"], body  # type: ignore[index]
