"""The Python SDK's checks of what it is given, sync and asyncio: a mistake fails where it is made, as a TypeError or
ValueError that says what to give instead, rather than in protobuf, in gRPC, or by aborting the process; and what
it is given in the shapes other SDKs take (a str stop sequence, JSON formats parsed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.certificates import make_certificates
from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.test_sdk import blocking
from warpcore.client import ApiConfig, AsyncClient, Client, FinishReason, LocalConfig
from warpcore.client._protocol import generate_request
from warpcore.server.rpc.server import WarpcoreServer

UNREACHABLE = "127.0.0.1:1"
"""For checks made before any call: a call would fail there with UnavailableError instead."""
CLIENTS = pytest.mark.parametrize("make", [Client, AsyncClient], ids=["sync", "async"])


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


@CLIENTS
@pytest.mark.parametrize(
    ("given", "missing"), [("client_certificate", "client_key"), ("client_key", "client_certificate")]
)
def test_half_a_client_certificate_pair_is_refused_at_construction(
    make: Callable[..., object], given: str, missing: str
) -> None:
    pems = make_certificates()
    half = {"client_certificate": pems.client_certificate, "client_key": pems.client_key}[given]
    # gRPC used to abort the whole process at the first call (Check failed: private_key != nullptr).
    message = f"{given} needs {missing} too: mutual TLS takes a client certificate and its key together, or neither"
    with pytest.raises(ValueError, match=f"^{message}$"):
        make(UNREACHABLE, root_certificates=pems.ca, **{given: half})


NOT_A_CERTIFICATE = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@CLIENTS
@pytest.mark.parametrize(
    ("option", "pem", "says"),
    [
        ("root_certificates", b"no certificate in here\n", "holds no certificate"),
        ("root_certificates", NOT_A_CERTIFICATE, "holds a certificate that cannot be read"),
        ("client_certificate", "key", "holds no certificate"),
        ("client_key", "certificate", "holds no PEM private key"),
    ],
)
def test_pem_data_that_is_not_what_the_option_takes_is_refused_at_construction(
    make: Callable[..., object], option: str, pem: bytes | str, says: str, tmp_path: Path
) -> None:
    """gRPC would fail every call's handshake, saying only "Failed to create security handshaker"."""
    pems = make_certificates()
    given = pem if isinstance(pem, bytes) else {"key": pems.client_key, "certificate": pems.client_certificate}[pem]
    options = {"root_certificates": pems.ca, "client_certificate": pems.client_certificate}
    options["client_key"] = pems.client_key
    (tmp_path / "given.pem").write_bytes(given)
    for value, source in ((given, "the PEM data given"), (tmp_path / "given.pem", repr(str(tmp_path / "given.pem")))):
        with pytest.raises(ValueError, match=f"^{option}: {re.escape(source)} {says}"):
            make(UNREACHABLE, **{**options, option: value})


@CLIENTS
@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("server", "client_key: is not the private key of client_certificate (another pair's)"),
        (b"-----BEGIN PRIVATE KEY-----\nZm9v\n-----END PRIVATE KEY-----\n", "client_key: holds a private key that"),
    ],
)
def test_a_client_key_that_is_not_the_certificates_is_refused_at_construction(
    make: Callable[..., object], key: bytes | str, says: str
) -> None:
    pems = make_certificates()
    given = pems.server_key if key == "server" else key
    with pytest.raises(ValueError, match=f"^{re.escape(says)}"):
        make(UNREACHABLE, client_certificate=pems.client_certificate, client_key=given)
    make(UNREACHABLE, client_certificate=pems.client_certificate, client_key=pems.client_key)  # its own: taken


async def test_a_str_stop_is_one_stop_sequence(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        reference = (await client.generate("tiny", prompt="the state", max_tokens=24, temperature=0)).text
        stop = " " + reference.split()[4]  # a word some way in: its characters come sooner
        stopped = await client.generate("tiny", prompt="the state", max_tokens=24, temperature=0, stop=stop)

    @blocking
    def sync_text() -> str:
        with Client(target, timeout=30) as client:
            return client.generate("tiny", prompt="the state", max_tokens=24, temperature=0, stop=stop).text

    expected = reference[: reference.index(stop)]
    assert expected.strip()
    assert (stopped.text, stopped.finish_reason, stopped.stop_sequence) == (
        expected,
        FinishReason.STOP_SEQUENCE,
        stop,
    )
    assert await sync_text() == stopped.text


@CLIENTS
async def test_unknown_options_are_type_errors_like_unexpected_keywords(make: Callable[..., Any]) -> None:
    client = make(UNREACHABLE)
    generate: Callable[..., Any] = client.generate
    count: Callable[..., Any] = client.count_tokens
    load: Callable[..., Any] = client.load_model
    listing: Callable[..., Any] = client.list_models
    with pytest.raises(TypeError, match=r"^unexpected option 'max_tokenz'; did you mean 'max_tokens'\?$"):
        await maybe(generate("m", prompt="x", max_tokenz=2))
    with pytest.raises(TypeError, match=r"^unexpected option 'tempreature'; did you mean 'temperature'\?$"):
        await maybe(count("m", prompt="x", tempreature=0.5))
    with pytest.raises(TypeError, match=r"^unexpected option 'zzz'; the options are adaptive_thinking, "):
        await maybe(generate("m", prompt="x", zzz=1))
    with pytest.raises(TypeError, match=r"^unexpected option 'threadz'; did you mean 'threads'\?$"):
        await maybe(load(TINY_MODEL, threadz=2))
    with pytest.raises(TypeError, match=r"^unexpected option 'api_kee'; did you mean 'api_key'\?$"):
        await maybe(listing("openai", api_kee="k"))
    # Settings as a dict (tester T2: an AttributeError from deep inside the SDK).
    with pytest.raises(
        TypeError, match=r"^config= takes an ApiConfig, a LocalConfig or a BackendConfig message, not dict"
    ):
        await maybe(load("gpt-4o", backend="openai", config={"api_key": "k", "base_url": "http://127.0.0.1:1/v1"}))


@CLIENTS
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timout": 0.2}, TypeError, "unexpected option 'timout'; did you mean 'timeout'?"),
        ({"tokn": "x"}, TypeError, "unexpected option 'tokn'; did you mean 'token'?"),
        ({"max_retries": -5}, ValueError, "max_retries must be from 0 to 4 (a count), not -5"),
        # gRPC makes 5 attempts at most: a 6th asked for was silently not made.
        ({"max_retries": 5}, ValueError, "max_retries must be from 0 to 4 (a count), not 5"),
        ({"max_retries": 1.5}, TypeError, "max_retries is an int, not float"),
        ({"tls": "yes"}, TypeError, "tls is a bool, not str"),
        ({"token": b"x"}, TypeError, "token is a str, not bytes"),
    ],
)
def test_client_options_unknown_or_of_no_use_are_refused_at_construction(
    make: Callable[..., Any], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """They were taken in silence: timout=0.2 left every call without a deadline."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(UNREACHABLE, **options)
    make(UNREACHABLE, max_retries=0, tls=False, token="t")


@CLIENTS
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": -1}, "max_tokens must be from 0 to 4294967295 (a uint32), not -1"),
        ({"max_tokens": 2**33}, "max_tokens must be from 0 to 4294967295 (a uint32), not 8589934592"),
        ({"seed": -1}, "seed must be from 0 to 4294967295 (a uint32), not -1"),
        ({"seed": 2**32}, "seed must be from 0 to 4294967295 (a uint32), not 4294967296"),
        ({"top_k": -3}, "top_k must be from 0 to 4294967295 (a uint32), not -3"),
        ({"top_logprobs": -1}, "top_logprobs must be from 0 to 4294967295 (a uint32), not -1"),
        ({"reasoning_budget": -1}, "reasoning_budget must be from 0 to 4294967295 (a uint32), not -1"),
        ({"logit_bias": {-1: 5.0}}, "a logit_bias token id must be from 0 to 4294967295 (a uint32), not -1"),
    ],
)
async def test_integers_beyond_their_fields_name_the_option_and_its_range(
    make: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    """Protobuf's own error said only "Value out of range: -1"."""
    client = make(UNREACHABLE)
    generate: Callable[..., Any] = client.generate
    count: Callable[..., Any] = client.count_tokens
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        await maybe(generate("m", prompt="x", **options))
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        await maybe(count("m", prompt="x", **options))
    with pytest.raises(TypeError, match=r"^seed is an int, not str$"):
        await maybe(generate("m", prompt="x", seed="1"))


@CLIENTS
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, "temperature is a number, not str"),
        ({"top_p": None}, "top_p is a number, not NoneType"),
        ({"presence_penalty": True}, "presence_penalty is a number, not bool"),
        ({"logit_bias": {5: "up"}}, "a logit_bias value is a number, not str"),
        ({"logprobs": "yes"}, "logprobs is a bool, not str"),
        ({"parallel_tool_calls": 1}, "parallel_tool_calls is a bool, not int"),
        ({"stop": [1]}, "stop is a str or a sequence of str, not of int"),
        ({"stop": 5}, "stop is a str or a sequence of str, not int"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
async def test_options_of_another_type_name_the_option(
    make: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    """A tester's finding: protobuf's errors named neither the option nor its type ("must be real number, not str",
    "bad argument type for built-in operation"), and a model_id of None reached the server."""
    client = make(UNREACHABLE)
    generate: Callable[..., Any] = client.generate
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        await maybe(generate("m", prompt="x", **options))
    with pytest.raises(TypeError, match=r"^model_id is a str, not NoneType$"):
        await maybe(generate(None, prompt="x"))


@CLIENTS
async def test_a_mapping_message_with_content_parts_says_content_is_a_str(make: Callable[..., Any]) -> None:
    generate: Callable[..., Any] = make(UNREACHABLE).generate
    parts = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    says = (
        "a message given as a mapping has a str content, not list; send parts (text, images, documents) as"
        ' Message(role, parts=("text", Image(...)))'
    )
    with pytest.raises(TypeError, match=f"^{re.escape(says)}$"):
        await maybe(generate("m", messages=[parts]))
    with pytest.raises(TypeError, match=r"has a role and a text content, no more; .*\(got keys \['content', 'name'"):
        await maybe(generate("m", messages=[{"role": "user", "content": "hi", "name": "x"}]))
    # A tester's finding: a mapping without its content was sent as an empty turn.
    with pytest.raises(TypeError, match=r"has a role and a text content, no more; .*\(got keys \['role'\]\)"):
        await maybe(generate("m", messages=[{"role": "user"}]))
    with pytest.raises(TypeError, match=r"^prompt is a str, not bytes$"):
        await maybe(generate("m", prompt=b"hi"))


@CLIENTS
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.embed("m", ["x"], dimensions=-3), "dimensions must be from 0 to 4294967295 (a uint32), not -3"),
        (
            lambda c: c.load_model(TINY_MODEL, context_size=-5),
            "context_size must be from 0 to 4294967295 (a uint32), not -5",
        ),
        (lambda c: c.load_model(TINY_MODEL, threads=-2), "threads must be from 0 to 4294967295 (a uint32), not -2"),
        (lambda c: c.load_model(TINY_MODEL, parallel=-1), "parallel must be from 0 to 4294967295 (a uint32), not -1"),
        (
            lambda c: c.load_model(TINY_MODEL, gpu_layers=2**31),
            "gpu_layers must be from -2147483648 to 2147483647 (an int32), not 2147483648",
        ),
    ],
    ids=["dimensions", "context_size", "threads", "parallel", "gpu_layers"],
)
async def test_load_and_embed_integers_beyond_their_fields_name_the_option(
    make: Callable[..., Any], call: Callable[[Any], Any], message: str
) -> None:
    """A tester's finding: protobuf's "Value out of range: -3", naming no option."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        await maybe(call(make(UNREACHABLE)))


@CLIENTS
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (b"abc", "inputs is a str or an iterable of str, not bytes"),
        (5, "inputs is a str or an iterable of str, not int"),
        (["a", None], "inputs is a str or an iterable of str, not of NoneType"),
    ],
)
async def test_embed_inputs_of_another_type_say_what_they_take(
    make: Callable[..., Any], inputs: object, message: str
) -> None:
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        await maybe(make(UNREACHABLE).embed("m", inputs))


@CLIENTS
async def test_unknown_words_of_word_valued_options_list_the_accepted_ones(make: Callable[..., Any]) -> None:
    client = make(UNREACHABLE)
    generate: Callable[..., Any] = client.generate
    load: Callable[..., Any] = client.load_model
    numa = "^numa_strategy is one of disabled, distribute, isolate, numactl, mirror, not 'weird'$"
    with pytest.raises(ValueError, match=numa):
        await maybe(load(TINY_MODEL, numa_strategy="weird"))
    with pytest.raises(ValueError, match=numa):
        await maybe(load(TINY_MODEL, config=LocalConfig(numa_strategy="weird")))  # type: ignore[arg-type]
    efforts = "^reasoning_effort is one of minimal, low, medium, high, none, xhigh, max, not 'extreme'$"
    with pytest.raises(ValueError, match=efforts):
        await maybe(generate("m", prompt="x", reasoning_effort="extreme"))
    with pytest.raises(ValueError, match=r"^verbosity is one of low, medium, high, not 'loud'$"):
        await maybe(generate("m", prompt="x", verbosity="loud"))
    with pytest.raises(ValueError, match=r"^unknown pooling 'max'; choose one of mean, cls, last$"):
        await maybe(load(TINY_MODEL, embedding=True, pooling="max"))


async def maybe(result: Any) -> Any:
    """The result of a sync call, or of an async one awaited."""
    return await result if hasattr(result, "__await__") else result


@CLIENTS
@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (-1, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not -1"),
        (0, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not 0"),
        (float("nan"), ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not nan"),
        (float("inf"), ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not inf"),
        (1e10, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not 10000000000.0"),
        ("5", TypeError, "timeout is a number of seconds (or None for no deadline), not str"),
        (True, TypeError, "timeout is a number of seconds (or None for no deadline), not bool"),
    ],
)
async def test_a_timeout_no_call_could_keep_is_refused_where_it_is_given(
    make: Callable[..., Any], seconds: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(UNREACHABLE, timeout=seconds)
    client = make(UNREACHABLE)
    listing: Callable[..., Any] = client.list_models
    generate: Callable[..., Any] = client.generate
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await maybe(listing(timeout=seconds))
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await maybe(generate("m", prompt="x", stream=True, timeout=seconds))


async def test_good_timeouts_still_work(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        assert await client.list_models(timeout=5) == []

    @blocking
    def use() -> str:
        with Client(target, timeout=None) as client:
            return client.health(timeout=2.5)

    assert await use() == "SERVING"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "object", "properties": {"n": {"type": "integer"}}},
        "json_object",
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    ],
    ids=["schema", "json_object", "openai json_object", "openai json_schema"],
)
async def test_json_formats_other_than_a_pydantic_model_are_parsed_as_json(
    target: str, openai_upstream: FakeOpenAI, response_format: Any
) -> None:
    openai_upstream.script = Script(chunks=['{"n": 4, ', '"why": ["2", "+2"]}'])
    config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        response = await client.generate("m", prompt="2+2?", response_format=response_format)

    @blocking
    def streamed() -> Any:
        with (
            Client(target, timeout=30) as client,
            client.generate("m", prompt="2+2?", response_format=response_format, stream=True) as stream,
        ):
            return stream.get_final_response().parsed

    assert response.parsed == {"n": 4, "why": ["2", "+2"]}
    assert await streamed() == response.parsed
    openai_upstream.script = Script(chunks=["plain text"])
    async with AsyncClient(target, timeout=30) as client:
        assert (await client.generate("m", prompt="2+2?", response_format={"type": "text"})).parsed is None
        assert (await client.generate("m", prompt="2+2?")).parsed is None


def test_anthropic_betas_are_a_generation_option() -> None:
    request, _ = generate_request("m", "hi", None, {"anthropic_betas": ["interleaved-thinking-2025-05-14"]})
    assert list(request.options.anthropic_betas) == ["interleaved-thinking-2025-05-14"]
