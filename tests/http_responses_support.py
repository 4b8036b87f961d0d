"""Shared by the tests/test_http_responses_*.py modules (OpenAI's Responses API on the HTTP door): the function tool
they offer, and a response's output and usage as plain data, less its item ids."""

from __future__ import annotations

from typing import Any

from openai.types.responses import Response

from tests.local_tools import WEATHER

FUNCTION = {"type": "function", "name": WEATHER.name, "parameters": WEATHER.parameters, "strict": False}


SDK_ADDITIONS = ("parsed", "parsed_arguments")
"""What the SDK's stream helper adds to the output items it returns."""


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: plain(member) for key, member in value.items() if key not in SDK_ADDITIONS}
    return [plain(member) for member in value] if isinstance(value, list) else value


def without_ids(response: Response) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A response's output and usage, less the item ids, which name one response only."""
    output = [plain(item.model_dump(exclude={"id"})) for item in response.output]
    return output, None if response.usage is None else response.usage.model_dump()
