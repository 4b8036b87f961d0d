"""A request's JSON body, checked to be an object whose every string is text a backend can take."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from warpcore.server.core.errors import InvalidArgumentError

# JSON may spell a UTF-16 surrogate as an escape; Python's parser then makes a string that holds half a character,
# which no encoder, tokenizer or upstream SDK takes. Only a body with such an escape needs its strings walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; InvalidArgumentError (naming the field) if it is none, or if a string in it holds
    an unpaired surrogate escape."""
    try:
        text = (await request.read()).decode(request.charset or "utf-8")
        body = json.loads(text)
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
    except ValueError:  # Python's bound on an integer's digits (sys.get_int_max_str_digits), far beyond any field's
        raise InvalidArgumentError(
            "a number in the request body has too many digits for any field", field="request", reason="INVALID_JSON"
        ) from None
    except RecursionError:  # the parser's own bound on nesting, far beyond any request's
        raise InvalidArgumentError(
            "the request body nests arrays and objects too deeply", field="request", reason="INVALID_JSON"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("the request body must be a JSON object", field="request", reason="INVALID_JSON")
    if _SURROGATE_ESCAPE.search(text) is not None:
        where = _unpaired_surrogate(body, "")
        if where is not None:
            raise InvalidArgumentError(
                f"{where} holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff without its other half);"
                " send valid Unicode text",
                field=where,
                reason="INVALID_JSON",
            )
    return body


def _unpaired_surrogate(value: object, path: str) -> str | None:
    """The path of the first string (or object key) in `value`, found at `path`, that is not valid Unicode, if any;
    never the empty path, the body being an object."""
    if isinstance(value, str):
        return None if _encodable(value) else path
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unpaired_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if not _encodable(key):
                return inner.encode("utf-8", "backslashreplace").decode()
            found = _unpaired_surrogate(item, inner)
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
