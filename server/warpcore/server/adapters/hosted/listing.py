"""An upstream's model list as the SDKs read it: whatever JSON it holds, which may be none (a proxy's page)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from warpcore.server.adapters.hosted.config import ResolvedApi
from warpcore.server.adapters.hosted.errors import upstream_error
from warpcore.server.core.errors import UPSTREAM_MALFORMED, NotFoundError, UnavailableError


@contextlib.contextmanager
def unreadable_listing(api: ResolvedApi) -> Iterator[None]:
    """A model list that is not the JSON the API answers with is the upstream's fault, not the server's: the SDKs
    raise what parsing it raised (a JSONDecodeError), or, for a body of another content type (a proxy's HTML page),
    an AttributeError from inside their page class."""
    try:
        yield
    except (json.JSONDecodeError, AttributeError, TypeError) as error:
        what = f"not JSON ({error})" if isinstance(error, json.JSONDecodeError) else "not the API's JSON"
        raise upstream_error(UnavailableError, api, f"the model list is {what}", reason=UPSTREAM_MALFORMED) from error


@contextlib.contextmanager
def no_list_there(name: str, api: ResolvedApi) -> Iterator[None]:
    """A model list the upstream answers 404 to, named as a base URL to check: most likely one cut short (of /v1)."""
    try:
        yield
    except NotFoundError as error:
        raise NotFoundError(
            f"{error.message}; the upstream has no model list under its base URL: check base_url (the {name} API's"
            f" own is {api.default_base_url})",
            field="settings.base_url",
            reason=error.reason,
            metadata=error.metadata,
        ) from None


def listed_id(model: object) -> str:
    """A listed model's id; TypeError (which `unreadable_listing` reports) for an entry without a string one: the
    SDKs take whatever JSON the list holds."""
    model_id = getattr(model, "id", None)
    if not isinstance(model_id, str):
        raise TypeError("a listed model has no string id")
    return model_id
