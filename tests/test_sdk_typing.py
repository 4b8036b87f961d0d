"""The SDK's types as a user's `mypy --strict` sees them: `parsed` typed by the pydantic model given as
response_format (object for any other format, None without one: never Any), and closed-set options refusing words
outside their set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest

from warpcore.client import (
    AsyncClient,
    Client,
    GenerationOptions,
    ModelState,
    ModelType,
    NumaStrategy,
    Pooling,
    ReasoningEffort,
    Verbosity,
)
from warpcore.client._protocol import generate_request
from warpcore.client._tools import levels
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

CLIENT_SOURCE = Path(__file__).resolve().parent.parent / "client" / "src"
UNREACHABLE = "127.0.0.1:1"

# Each line that ends in "# revealed: T" must have mypy reveal T; each that ends in "# error: code" must be one error of
# that code; and mypy must say nothing else.
PROGRAM = """
from __future__ import annotations

from typing import Any

import pydantic

from warpcore.client import AsyncClient, Client, GenerateResponse, GenerationOptions, LocalConfig, Stream


class City(pydantic.BaseModel):
    name: str


class Point:
    "Not pydantic: any class with the two class methods response_format uses."

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {"type": "object"}

    @classmethod
    def model_validate_json(cls, json_data: str) -> Point:
        return cls()


def text_of(response: GenerateResponse[object]) -> str:
    "Any response is a GenerateResponse[object], whatever its `parsed`, which is only read."
    return response.text


def blocking(client: Client, options: GenerationOptions) -> None:
    city: City | None = client.generate("m", prompt="x", response_format=City).parsed
    if city is not None:
        print(city.name)
    reveal_type(client.generate("m", prompt="x", response_format=City).parsed)  # revealed: program.City | None
    reveal_type(client.generate("m", prompt="x", response_format=Point).parsed)  # revealed: program.Point | None
    with client.generate("m", messages=[("user", "x")], stream=True, response_format=City) as stream:
        reveal_type(stream.get_final_response().parsed)  # revealed: program.City | None
    with client.generate("m", prompt="x", stream=True) as plain_stream:
        reveal_type(plain_stream.get_final_response().parsed)  # revealed: None
    reveal_type(client.generate("m", prompt="x", response_format={"type": "object"}).parsed)  # revealed: object
    reveal_type(client.generate("m", prompt="x", response_format="json_object").parsed)  # revealed: object
    reveal_type(client.generate("m", prompt="x").parsed)  # revealed: None
    reveal_type(client.generate("m", prompt="x", **options).parsed)  # revealed: object
    print(text_of(client.generate("m", prompt="x")), text_of(client.generate("m", prompt="x", response_format=City)))
    client.generate("m", prompt="x", reasoning_effort="xhigh", verbosity="low", max_tokens=9)
    client.count_tokens("m", prompt="x", response_format=City, reasoning_effort="max")
    client.load_model("m", numa_strategy="isolate", pooling="cls")
    name: str = client.generate("m", prompt="x", response_format=City).parsed.name  # error: union-attr
    wrong: int | None = client.generate("m", prompt="x", response_format=City).parsed  # error: assignment
    count: int = client.generate("m", prompt="x").parsed  # error: assignment
    data: bytes = client.generate("m", prompt="x", response_format={"type": "object"}).parsed  # error: assignment
    client.generate("m", prompt="x", response_format=None)  # error: call-overload
    client.generate("m", prompt="x", reasoning_effort="hgih")  # error: call-overload
    client.generate("m", prompt="x", verbosity="loud")  # error: call-overload
    client.load_model("m", numa_strategy="spread")  # error: arg-type
    LocalConfig(pooling="max")  # error: arg-type
    if client.list_models()[0].state == "loaded":  # error: comparison-overlap
        pass


async def concurrent(client: AsyncClient) -> None:
    city: City | None = (await client.generate("m", prompt="x", response_format=City)).parsed
    async with await client.generate("m", prompt="x", stream=True, response_format=City) as stream:
        reveal_type((await stream.get_final_response()).parsed)  # revealed: program.City | None
    reveal_type((await client.generate("m", prompt="x", response_format={"type": "object"})).parsed)  # revealed: object
    reveal_type((await client.generate("m", prompt="x")).parsed)  # revealed: None
    async with await client.generate("m", prompt="x", stream=True) as plain_stream:
        reveal_type((await plain_stream.get_final_response()).parsed)  # revealed: None
    wrong: str | None = (await client.generate("m", prompt="x", response_format=City)).parsed  # error: assignment
    await client.generate("m", prompt="x", reasoning_effort="hgih")  # error: call-overload
    async for event in client.pull_model("hf:o/r:f.gguf"):  # an async iterator, as the sync twin's is an iterator
        reveal_type(event)  # revealed: warpcore.client._pull.PullProgress | warpcore.client._pull.PulledModel
    await client.pull_model("hf:o/r:f.gguf")  # error: misc


def unparameterized(response: GenerateResponse, stream: Stream) -> tuple[Any, Any]:
    "Bare GenerateResponse and Stream mean their parsed is Any, as before they were generic."
    return response.parsed["name"], stream.get_final_response().parsed
"""

_MARK = re.compile(r"# (revealed|error): (.+)$")
_SAID = re.compile(r'^program\.py:(\d+): (?:note: Revealed type is "(.+)"|error: .*\[([a-z-]+)\])$')


def expected(program: str) -> set[tuple[int, str, str]]:
    found = set()
    for number, line in enumerate(program.splitlines(), 1):
        mark = _MARK.search(line)
        if mark:
            found.add((number, mark[1], mark[2].strip()))
    return found


def said(output: str) -> set[tuple[int, str, str]]:
    """mypy's revealed types and errors; other notes (the overload variants it lists) left out."""
    found = set()
    for line in output.splitlines():
        match = _SAID.match(line)
        if match:
            found.add((int(match[1]), "revealed" if match[2] else "error", match[2] or match[3]))
        else:
            assert re.match(r"^program\.py:\d+: note: ", line), f"unexpected mypy output: {line}"
    return found


def test_a_strict_user_program_gets_precise_types(tmp_path: Path) -> None:
    program = textwrap.dedent(PROGRAM).lstrip()
    (tmp_path / "program.py").write_text(program)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # nothing but the flags below, whatever lies around
    flags = ["--config-file", "mypy.ini", "--strict", "--show-error-codes", "--no-error-summary", "--no-pretty"]
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", *flags, "--cache-dir", str(tmp_path / "cache"), "program.py"],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(CLIENT_SOURCE)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.stderr == ""
    assert said(checked.stdout) == expected(program), checked.stdout
    assert checked.returncode == 1  # the errors above, and only they


@pytest.mark.parametrize(
    ("words", "enum", "unset"),
    [
        (ReasoningEffort, tools_pb2.ReasoningEffort, False),
        (Verbosity, pb.Verbosity, False),
        (NumaStrategy, pb.NumaStrategy, False),
        (Pooling, epb.Pooling, False),
        (ModelState, pb.ModelState, True),
        (ModelType, pb.ModelType, True),
    ],
)
def test_literal_words_are_the_protocol_enums_values(words: Any, enum: Any, unset: bool) -> None:
    """What the types allow is what the run-time checks take (an option) or what model_from gives (a Model field)."""
    assert set(get_args(words)) == set(levels(enum)) | ({"unspecified"} if unset else set())


class City(pydantic.BaseModel):
    name: str


def test_response_format_as_its_own_keyword_is_taken_as_in_the_options() -> None:
    in_options, parse = generate_request("m", "x", None, GenerationOptions(response_format=City))  # count_tokens'
    as_keyword, keyword_parse = generate_request("m", "x", None, {}, City)  # generate's
    assert in_options == as_keyword
    assert parse == keyword_parse == City.model_validate_json
    request, no_parse = generate_request("m", "x", None, {})
    assert (request.options.HasField("response_format"), no_parse) == (False, None)


async def test_a_response_format_of_none_is_refused_as_before() -> None:
    """None is no format, given as generate()'s keyword as much as among its options (and generate()'s types refuse
    it)."""
    refused = r'^response_format is "json_object", a JSON Schema dict or a pydantic model class$'
    with Client(UNREACHABLE) as client, pytest.raises(TypeError, match=refused):
        client.generate("m", prompt="x", response_format=None)  # type: ignore[call-overload]
    async with AsyncClient(UNREACHABLE) as async_client:
        with pytest.raises(TypeError, match=refused):
            await async_client.generate("m", prompt="x", response_format=None)  # type: ignore[call-overload]
