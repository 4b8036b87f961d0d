"""The warpcore command's usage errors: bad usage exits 2, numbers out of range or not numbers, no prompt, a missing
certificate file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import closed_port_target, usage_error, warpcore

pytestmark = pytest.mark.timeout(120)


async def test_bad_usage_exits_two() -> None:
    run = await warpcore(closed_port_target(), "models", "--backend", "nowhere")
    assert run.code == 2
    assert "invalid choice" in run.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["generate", "--max-tokens", "-1"],
            "warpcore generate: error: argument --max-tokens: must be an integer from 1 to 4294967295, not -1",
        ),
        (
            ["generate", "--max-tokens", "99999999999"],
            "argument --max-tokens: must be an integer from 1 to 4294967295, not 99999999999",
        ),
        (["generate", "--max-tokens", "0"], "argument --max-tokens: must be an integer from 1 to 4294967295, not 0"),
        (
            ["chat", "--max-tokens", "4294967296"],
            "warpcore chat: error: argument --max-tokens: must be an integer from 1",
        ),
        (["generate", "--temperature", "-0.5"], "argument --temperature: must be a number from 0 to 2, not -0.5"),
        # A tester's finding: the command took up to 3.4e38, which the server refused above 2 (exit 1).
        (["generate", "--temperature", "3"], "argument --temperature: must be a number from 0 to 2, not 3"),
        (["generate", "--temperature", "nan"], "argument --temperature: must be a number from 0 to 2, not nan"),
        (
            ["chat", "--presence-penalty", "2.5"],
            "warpcore chat: error: argument --presence-penalty: must be a number from -2 to 2, not 2.5",
        ),
        (
            ["load", "x.gguf", "--context-size", "-5"],
            "warpcore load: error: argument --context-size: must be an integer from 1 to 4294967295, not -5",
        ),
        (["load", "x.gguf", "--context-size", "4294967296"], "argument --context-size: must be an integer from 1 to"),
        (
            ["--timeout", "-1", "health"],
            "warpcore: error: argument --timeout: must be a number greater than 0 and at most 100000000, not -1",
        ),
        (["--timeout", "0", "health"], "argument --timeout: must be a number greater than 0"),
        (["--timeout", "inf", "health"], "argument --timeout: must be a number greater than 0"),
        (["--timeout", "1e300", "health"], "argument --timeout: must be a number greater than 0"),
        (["generate", "--stop", ""], "warpcore generate: error: argument --stop: must not be empty"),
    ],
)
async def test_numbers_out_of_range_are_usage_errors(args: list[str], error: str) -> None:
    # --model: no server call precedes building the request, where protobuf used to refuse the value.
    model = ["--model", "m", "hi"] if args[0] == "generate" else []
    run = await warpcore(closed_port_target(), *args, *model)
    assert error in usage_error(run)


async def test_a_number_that_is_not_one_is_a_usage_error() -> None:
    run = await warpcore(closed_port_target(), "generate", "--max-tokens", "1.5", "hi")
    assert usage_error(run) == "warpcore generate: error: argument --max-tokens: '1.5' is not an integer"


@pytest.mark.parametrize("args", [[], [""]], ids=["empty stdin", "empty argument"])
async def test_generate_without_a_prompt_says_one_is_needed(args: list[str]) -> None:
    # The closed port shows that it does not call the server: that would fail with UNAVAILABLE (exit 1).
    run = await warpcore(closed_port_target(), "generate", "--model", "m", *args, stdin="")
    assert usage_error(run) == (
        "warpcore generate: error: a prompt is needed: give PROMPT as an argument or write it on stdin"
    )


@pytest.mark.parametrize("option", ["--root-certificates", "--client-certificate", "--client-key"])
async def test_missing_certificate_file_is_a_usage_error_naming_the_option(option: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    run = await warpcore(closed_port_target(), option, missing, "health")
    assert usage_error(run) == f"warpcore: error: argument {option}: cannot read {missing!r}: No such file or directory"


@pytest.mark.parametrize(
    ("args", "unknown"),
    [
        # A tester's finding: --max ran as --max-tokens, and --targ as --target, where the server refuses both kinds.
        (["generate", "--max", "2", "--model", "m", "hi"], "--max"),
        (["chat", "--temp", "0.5"], "--temp"),
        (["--tim=5", "health"], "--tim"),
    ],
)
async def test_a_flag_is_taken_by_its_whole_name_only(args: list[str], unknown: str) -> None:
    run = await warpcore(closed_port_target(), *args)
    assert usage_error(run).startswith(f"warpcore: error: unrecognized arguments: {unknown}")


@pytest.mark.parametrize(
    "args",
    [
        ["load", "m", "--backend", "openai", "--api-key", "sk-canary0123456789abcdef"],
        ["load", "m", "--backend", "openai", "--api-key=sk-canary0123456789abcdef"],
        ["health", "--api-key", "sk-canary0123456789abcdef", "--secret", "hunter2canary"],
        ["load", "m", "--backend", "openai", "--api-key", "-sk-canary0123456789abcdef"],
        ["load", "m", "--backend", "openai", "-ksk-canary0123456789abcdef"],
        ["health", "--api-key", "sk-canary1", "sk-canary2"],
        ["models", "--api-key", "--CANARY4"],
    ],
)
async def test_an_unknown_flags_value_is_never_echoed(args: list[str]) -> None:
    """A tester's finding: argparse quoted `--api-key sk-...` (a flag the command does not have) whole in its error,
    onto the terminal or a CI log."""
    error = usage_error(await warpcore(closed_port_target(), *args))
    assert error.startswith("warpcore: error: unrecognized arguments: ")
    assert "not shown" in error
    assert "canary" not in error
    if "--api-key" in error:
        assert "--api-key-env NAME or --api-key-file PATH" in error


async def test_unknown_words_without_a_flag_are_named() -> None:
    error = usage_error(await warpcore(closed_port_target(), "models", "extra", "words"))
    assert error == "warpcore: error: unrecognized arguments: extra words"


@pytest.mark.parametrize(
    "args", [["--api-key", "sk-canary0123456789", "health"], ["-k", "sk-canary0123456789", "models"]]
)
async def test_a_value_taken_for_the_command_is_never_echoed(args: list[str]) -> None:
    """A regression tester's finding (T89): an unknown flag before the command made argparse take its value, a key,
    for the command, and quote it as an invalid choice."""
    error = usage_error(await warpcore(closed_port_target(), *args))
    assert error.startswith("warpcore: error: argument COMMAND: invalid choice, not shown (choose from 'generate'")
    assert "canary" not in error


async def test_a_mistyped_command_is_named() -> None:
    error = usage_error(await warpcore(closed_port_target(), "genrate"))
    assert error.startswith("warpcore: error: argument COMMAND: invalid choice: 'genrate' (choose from")


async def test_a_mistyped_flag_with_a_digit_is_named() -> None:
    """A regression tester's finding (T90): `--max-tokens2` was counted as a word not shown."""
    error = usage_error(await warpcore(closed_port_target(), "generate", "--max-tokens2", "5", "hi"))
    assert error.startswith("warpcore: error: unrecognized arguments: --max-tokens2")
