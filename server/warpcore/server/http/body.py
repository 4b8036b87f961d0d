"""A request's JSON body, checked to be an object whose every string is text a backend can take."""

from __future__ import annotations

import asyncio
import codecs
import json
from typing import Any

from aiohttp import web

from warpcore.server.core import bounds, json_text
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.http.errors import WHOLE_REQUEST, RequestTooSlowError

TAKEN_CHARSETS = frozenset(("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"))
"""The charsets a body may come in, as `codecs.lookup` names them: Unicode's, which JSON's RFCs name, whose decoders
take time in proportion to the body and refuse an unpaired surrogate. Python decodes others (punycode) in time that
grows with the square of the body, on the event loop, or to characters no backend takes (UTF-7)."""


def _text(raw: bytes, charset: str | None) -> str:
    """The body's text in its charset (UTF-8 unless it names one). UTF-8's is read without one byte order mark
    starting it, which RFC 8259 lets a parser ignore and a file saved by a Windows editor carries (UTF-16's and
    UTF-32's decoders drop theirs)."""
    try:
        # LookupError for a charset Python does not know, as for one not taken
        codec = codecs.lookup(charset or "utf-8").name
    except ValueError:  # a name no codec could have (a NUL in it)
        raise LookupError(charset) from None
    if codec not in TAKEN_CHARSETS:
        raise LookupError(codec)
    return raw.decode("utf-8-sig" if codec == "utf-8" else codec)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; InvalidArgumentError (naming the field) if it is none, or if a string in it holds
    an unpaired surrogate escape. A large body is decoded and checked on a thread: megabytes take a good part of a
    second, during which the event loop would serve no other call."""
    try:
        async with asyncio.timeout(bounds.BODY_READ_SECONDS):
            raw = await request.read()
    except TimeoutError:
        raise RequestTooSlowError(
            f"the request body did not arrive within {bounds.BODY_READ_SECONDS:g} seconds", field=WHOLE_REQUEST
        ) from None
    except web.RequestPayloadError:  # aiohttp could not undo the body's Content-Encoding
        encoding = request.headers.get("Content-Encoding", "").strip().lower()  # gzip or deflate: the door's own names
        raise InvalidArgumentError(
            f"the request body is not the {encoding} stream its Content-Encoding"
            " says; send it compressed so, or uncompressed without the header",
            field=WHOLE_REQUEST,
            reason="INVALID_JSON",
        ) from None
    return await bounds.read_off_loop_when_large(len(raw), _json_object, raw, request.charset)


def _json_object(raw: bytes, charset: str | None) -> dict[str, Any]:
    try:
        text = _text(raw, charset)
        body = json_text.loads(text)
    except LookupError:
        raise InvalidArgumentError(
            f"the request body's charset {bounds.quoted(charset)} is not one this server takes; send JSON in"
            " UTF-8 (or UTF-16 or UTF-32)",
            field=WHOLE_REQUEST,
            reason="INVALID_JSON",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidArgumentError(
            "the request body is not valid JSON", field=WHOLE_REQUEST, reason="INVALID_JSON"
        ) from None
    except json_text.JsonNumberError as error:
        raise InvalidArgumentError(
            f"the request body holds {error}", field=WHOLE_REQUEST, reason="INVALID_JSON"
        ) from None
    except RecursionError:  # the parser's own bound on nesting, far beyond any request's
        raise InvalidArgumentError(
            "the request body nests arrays and objects too deeply", field=WHOLE_REQUEST, reason="INVALID_JSON"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("the request body must be a JSON object", field=WHOLE_REQUEST, reason="INVALID_JSON")
    where = json_text.unpaired_surrogate(text, body)
    if where is not None:
        raise InvalidArgumentError(
            f"{where} holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff without its other half);"
            " send valid Unicode text",
            field=where,
            reason="INVALID_JSON",
        )
    return body
