"""The warpcore command's options for every load setting and for sampling in chat, end to end against the server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.cli import ENV, Run, closed_port_target, usage_error, warpcore
from tests.conftest import TINY_MODEL, collect
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from warpcore.client._cli_load import API, LOCAL
from warpcore.client.cli import parser
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(120)

SAMPLING = {"max_tokens", "temperature", "stop", "seed", "system"}
"""The options chat lacked, which it now shares with generate."""


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def residency(target: str) -> dict[str, Any]:
    """The only loaded model as `warpcore models --json --residency` prints it."""
    run = await warpcore(target, "models", "--json", "--residency")
    assert run.code == 0, run.stderr
    (model,) = json.loads(run.stdout)
    return dict(model)


async def test_a_model_loaded_with_settings_gets_a_new_keep_alive_from_a_load_naming_them(target: str) -> None:
    """A load naming other settings is another model (ALREADY_EXISTS), so without options for all of them a model
    loaded with custom settings could not have its keep-alive changed from the shell."""

    def load(parallel: str, *more: str) -> list[str]:
        settings = ["--context-size", "256", "--parallel", parallel, "--threads", "1", "--prompt-cache-tokens", "64"]
        settings += ["--no-use-mmap", "--no-use-mlock", "--no-use-gpu", "--gpu-layers", "0"]
        return ["load", TINY_MODEL, "--id", "tiny", *settings, "--numa-strategy", "disabled", *more]

    assert await warpcore(target, *load("2")) == Run(0, "tiny\n", "")
    first = await residency(target)
    assert (first["context_size"], first["residency"]["slots_total"]) == (256, 2)
    assert first["residency"]["keep_alive"] is None  # the server's default: forever

    assert await warpcore(target, *load("2", "--keep-alive", "300")) == Run(0, "tiny\n", "")
    again = await residency(target)
    assert again["residency"]["keep_alive"] == 300
    assert (again["context_size"], again["residency"]["slots_total"]) == (256, 2)  # the same model, kept

    other = await warpcore(target, *load("3", "--keep-alive", "60"))  # the settings reach the server: these differ
    assert other.code == 1
    assert other.stderr.startswith("warpcore: ALREADY_EXISTS: "), other.stderr
    assert (await residency(target))["residency"]["keep_alive"] == 300


async def test_an_api_key_comes_from_an_environment_variable_or_a_file(
    openai_upstream: FakeOpenAI, target: str, tmp_path: Path
) -> None:
    openai_upstream.required_api_key = OPENAI_KEY
    key_file = tmp_path / "key"
    key_file.write_text(f"{OPENAI_KEY}\n")
    base = ["load", openai_upstream.models[0], "--backend", "openai", "--base-url", openai_upstream.base_url]
    base += ["--organization", "org-cli", "--api-timeout", "30"]
    env = {**ENV, "CLI_TEST_KEY": OPENAI_KEY}
    for model_id, key in (
        ("from-env", ["--api-key-env", "CLI_TEST_KEY"]),
        ("from-file", ["--api-key-file", str(key_file)]),
    ):
        assert await warpcore(target, *base, "--id", model_id, *key, env=env) == Run(0, f"{model_id}\n", "")
        run = await warpcore(target, "generate", "--model", model_id, "hi")
        assert run.code == 0, run.stderr
        headers = openai_upstream.requests[-1].headers
        assert (headers["authorization"], headers["openai-organization"]) == (f"Bearer {OPENAI_KEY}", "org-cli")


async def test_a_providers_models_are_listed_with_the_key_and_base_url_given(
    openai_upstream: FakeOpenAI, target: str
) -> None:
    """A tester's finding: with no key in the server's environment, `models --backend openai` could only fail, where
    a load took the key and base URL on its command line."""
    openai_upstream.required_api_key = OPENAI_KEY
    env = {**ENV, "CLI_TEST_KEY": OPENAI_KEY}
    given = ["--base-url", openai_upstream.base_url, "--api-key-env", "CLI_TEST_KEY"]
    listed = await warpcore(target, "models", "--backend", "openai", "--json", *given, env=env)
    assert listed.code == 0, listed.stderr
    assert [model["id"] for model in json.loads(listed.stdout)] == openai_upstream.models
    assert openai_upstream.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    unhosted = await warpcore(target, "models", "--base-url", openai_upstream.base_url)
    assert unhosted.code == 2
    assert "argument --base-url: only with --backend openai or anthropic, without --backend" in unhosted.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--api-key-env", "CLI_TEST_UNSET"],
            "argument --api-key-env: the environment variable CLI_TEST_UNSET is not set",
        ),
        (
            ["--api-key-env", "CLI_TEST_EMPTY"],
            "argument --api-key-env: environment variable CLI_TEST_EMPTY is empty",
        ),
        (["--api-key-file", "/nonexistent/key"], "argument --api-key-file: cannot read /nonexistent/key: No such file"),
        (
            ["--api-key-env", "CLI_TEST_TAB"],
            "argument --api-key-env: the key in environment variable CLI_TEST_TAB is not printable ASCII",
        ),
        (
            ["--api-key-env", "HOME", "--api-key-file", "/proc/sys/kernel/ostype"],  # a line of printable ASCII
            "argument --api-key-file: not allowed with argument --api-key-env",
        ),
        (["--threads", "2"], "argument --threads: only with --backend llama_cpp, not --backend openai"),
        (
            ["--backend", "llama_cpp", "--base-url", "http://x"],
            "argument --base-url: only with --backend openai or anthropic",
        ),
        (["--backend", "llama_cpp", "--gpu-layers", "-2"], "argument --gpu-layers: must be an integer from -1 to"),
        (["--api-timeout", "0"], "argument --api-timeout: must be a number greater than 0"),
        # A tester's finding: it took up to 3.15576e+11, the longest Duration, which the server refused past a day.
        (["--api-timeout", "86401"], "argument --api-timeout: must be a number greater than 0 and at most 86400, not"),
    ],
)
async def test_bad_load_settings_are_usage_errors(args: list[str], error: str) -> None:
    # The closed port shows that nothing is sent: a call would fail with UNAVAILABLE (exit 1).
    env = {**ENV, "CLI_TEST_EMPTY": "", "CLI_TEST_TAB": "sk-one\ttwo"}
    run = await warpcore(closed_port_target(), "load", "m", "--backend", "openai", *args, env=env)
    assert error in usage_error(run)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "sk-proj-ABCDEF1234567890",
            "argument --api-key-env: the value is no environment variable's name (letters, digits and _), not shown as"
            " it may be the key; name the variable that holds the key",
        ),
        ("gsk_live_ABCDEF1234567890", "the environment variable (not quoted: it may be a key) is not set"),
    ],
)
async def test_a_key_given_where_its_variables_name_goes_is_not_shown(name: str, error: str) -> None:
    """A tester's finding: the command quoted it back ("the environment variable sk-proj-... is not set"), where the
    server's config file reader refuses the same mistake without quoting it."""
    run = await warpcore(closed_port_target(), "load", "m", "--backend", "openai", "--api-key-env", name)
    assert usage_error(run).endswith(error)
    assert "ABCDEF1234567890" not in run.stderr


def turn(text: str, max_tokens: int, **options: object) -> pb.GenerateRequest:
    """What `warpcore chat` asks for a first line `text`."""
    return pb.GenerateRequest(
        model_id="tiny",
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)],
        options=pb.GenerationOptions(max_tokens=max_tokens, **options),  # type: ignore[arg-type]
    )


async def test_chat_passes_temperature_and_stop_sequences(stub: Stub, tiny: str, target: str) -> None:
    reference, _ = await collect(stub.Generate(turn("the state", 24, temperature=0.0)))
    stop = " " + reference.split(" ")[3]
    args = ["chat", "--max-tokens", "24", "--temperature", "0", "--stop", "never", "--stop", stop]
    run = await warpcore(target, *args, stdin="the state\n")
    assert (run.code, run.stdout) == (0, reference[: reference.index(stop)] + "\n"), run.stderr


async def test_chat_passes_seed_and_system(stub: Stub, tiny: str, target: str) -> None:
    sampled = {"temperature": 1.5, "system": "be brief"}
    reference, _ = await collect(stub.Generate(turn("the state", 16, seed=7, **sampled)))
    assert reference != (await collect(stub.Generate(turn("the state", 16, seed=8, **sampled))))[0]
    assert reference != (await collect(stub.Generate(turn("the state", 16, seed=7, temperature=1.5))))[0]
    args = ["chat", "--max-tokens", "16", "--temperature", "1.5", "--seed", "7", "--system", "be brief"]
    run = await warpcore(target, *args, stdin="the state\n")
    assert (run.code, run.stdout) == (0, reference + "\n"), run.stderr


async def test_chat_and_generate_refuse_a_seed_beyond_uint32() -> None:
    for command in (["chat"], ["generate", "hi"]):
        run = await warpcore(closed_port_target(), *command, "--model", "m", "--seed", "4294967296")
        assert "argument --seed: must be an integer from 0 to 4294967295" in usage_error(run)


async def test_generate_and_chat_keep_a_prompt_out_of_the_prompt_cache_with_no_prompt_cache(
    server: WarpcoreServer, tiny: str, target: str
) -> None:
    """A tester's finding: the SDK's no_prompt_cache had no option in the command."""
    sample = server.metrics.registry.get_sample_value
    prompt = " ".join(f"Rule {n}: answer briefly and only about the village of Elm." for n in range(8))

    def cache() -> list[float | None]:
        lookups = [sample("warpcore_prompt_cache_lookups_total", {"model": tiny, "result": r}) for r in ("hit", "miss")]
        return [*lookups, sample("warpcore_prompt_cache_tokens", {"model": tiny})]

    for _ in range(2):  # the second would find the first in the cache
        run = await warpcore(target, "generate", "--no-prompt-cache", "--max-tokens", "2", prompt)
        assert run.code == 0, run.stderr
        run = await warpcore(target, "chat", "--no-prompt-cache", "--max-tokens", "2", stdin=f"{prompt}\n")
        assert run.code == 0, run.stderr
    assert cache() == [0, 0, 0]
    run = await warpcore(target, "generate", "--max-tokens", "2", prompt)  # without it, the prompt is looked up
    assert run.code == 0, run.stderr
    hits, misses, tokens = cache()
    assert (hits, misses) == (0, 1)
    assert tokens


async def test_max_tokens_above_the_servers_limit_is_the_servers_refusal(tiny: str, target: str) -> None:
    """The client holds --max-tokens to the field's uint32 only: the limit is the server's, and configurable."""
    run = await warpcore(target, "generate", "--max-tokens", "32769", "hi")  # the server's default limit, plus one
    assert (run.code, run.stderr) == (1, "warpcore: INVALID_ARGUMENT: options.max_tokens must be between 1 and 32768\n")


@pytest.mark.parametrize("command", ["load", "chat"])
def test_each_option_says_its_default(command: str) -> None:
    args = parser().parse_args([command, "m"] if command == "load" else [command])
    sub: argparse.ArgumentParser = args.parser
    options = [action for action in sub._actions if action.option_strings and action.dest != "help"]
    assert {action.dest for action in options} >= ({"keep_alive", *LOCAL, *API} if command == "load" else SAMPLING)
    for action in options:
        if command == "load" or action.dest in SAMPLING:
            assert "(default: " in (action.help or ""), action.option_strings
        if action.dest == "max_tokens":
            assert "refuses more than its own limit (its --max-tokens-limit, by default 32768)" in (action.help or "")
