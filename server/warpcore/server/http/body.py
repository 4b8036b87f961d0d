"""A request's JSON body, checked to be an object whose every string is text a backend can take."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from warpcore.server.core import bounds, json_text
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.http.errors import RequestTooSlowError


def _text(raw: bytes, charset: str | None) -> str:
    """The body's text in its charset: one that decodes to a character no backend can take (UTF-7 spells an unpaired
    surrogate, which UTF-8 never decodes to) is refused as one that cannot be decoded."""
    text = raw.decode(charset or "utf-8")
    if charset is not None and charset.lower() not in ("utf-8", "utf8") and not text.isascii():
        text.encode()  # raises UnicodeEncodeError for an unpaired surrogate
    return text


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; InvalidArgumentError (naming the field) if it is none, or if a string in it holds
    an unpaired surrogate escape."""
    try:
        async with asyncio.timeout(bounds.BODY_READ_SECONDS):
            raw = await request.read()
        text = _text(raw, request.charset)
        body = json_text.loads(text)
    except TimeoutError:
        raise RequestTooSlowError(
            f"the request body did not arrive within {bounds.BODY_READ_SECONDS:g} seconds", field="request"
        ) from None
    except LookupError:  # a charset Python does not know, or one that is no text encoding (base64)
        raise InvalidArgumentError(
            f"the request body's charset {request.charset!r} is not a text encoding; send JSON in UTF-8",
            field="request",
            reason="INVALID_JSON",
        ) from None
    except web.RequestPayloadError:  # aiohttp could not undo the body's Content-Encoding
        raise InvalidArgumentError(
            f"the request body is not the {request.headers.get('Content-Encoding', '')} stream its Content-Encoding"
            " says; send it compressed so, or uncompressed without the header",
            field="request",
            reason="INVALID_JSON",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidArgumentError(
            "the request body is not valid JSON", field="request", reason="INVALID_JSON"
        ) from None
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"the request body in its charset {request.charset!r} holds an unpaired UTF-16 surrogate; send JSON in"
            " UTF-8",
            field="request",
            reason="INVALID_JSON",
        ) from None
    except UnicodeError:  # a codec failing in its own way (punycode, undefined)
        raise InvalidArgumentError(
            f"the request body does not decode in its charset {request.charset!r}; send JSON in UTF-8",
            field="request",
            reason="INVALID_JSON",
        ) from None
    except json_text.JsonNumberError as error:
        raise InvalidArgumentError(f"the request body holds {error}", field="request", reason="INVALID_JSON") from None
    except RecursionError:  # the parser's own bound on nesting, far beyond any request's
        raise InvalidArgumentError(
            "the request body nests arrays and objects too deeply", field="request", reason="INVALID_JSON"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("the request body must be a JSON object", field="request", reason="INVALID_JSON")
    where = json_text.unpaired_surrogate(text, body)
    if where is not None:
        raise InvalidArgumentError(
            f"{where} holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff without its other half);"
            " send valid Unicode text",
            field=where,
            reason="INVALID_JSON",
        )
    return body
