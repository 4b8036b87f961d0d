"""The Python SDK's checks of what it is given, sync and asyncio: a mistake fails where it is made, as a TypeError or
ValueError that says what to give instead, rather than in protobuf, in gRPC, or by aborting the process: at a call
(unknown options, integers beyond their fields, options of another type, messages, embed inputs and word-valued
options)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import TINY_MODEL
from tests.sdk_inputs_support import CLIENTS, UNREACHABLE, maybe
from warpcore.client import LocalConfig


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
async def test_a_mapping_message_holds_a_role_and_a_content_only(make: Callable[..., Any]) -> None:
    generate: Callable[..., Any] = make(UNREACHABLE).generate
    with pytest.raises(TypeError, match=r"has a role and a content, no more; .*\(got keys \['content', 'name'"):
        await maybe(generate("m", messages=[{"role": "user", "content": "hi", "name": "x"}]))
    # A tester's finding: a mapping without its content was sent as an empty turn.
    with pytest.raises(TypeError, match=r"has a role and a content, no more; .*\(got keys \['role'\]\)"):
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
