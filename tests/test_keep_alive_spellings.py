"""One keep_alive grammar and one range for every place that reads one: the server's --keep-alive (and
WARPCORE_KEEP_ALIVE), its config file, the `warpcore load --keep-alive` command, and LoadModel over gRPC. The file
took "10 m" and " 7s" where the command refused "10 m" but took 1e3 and 1_000, and each said its own range. The
grammar takes every spelling the server ever started with (2d, 500ms, -1, inf, any case, spaces), so that an upgrade
does not refuse a deployment's WARPCORE_KEEP_ALIVE."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.conftest import TINY_MODEL, rich_details
from warpcore.client._cli_args import keep_alive as command_keep_alive
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.setting_values import SettingsError
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TAKEN = {
    **{"0": 0.0, "90": 90.0, "45s": 45.0, "10m": 600.0, "1.5h": 5400.0, "0.5s": 0.5, "forever": math.inf},
    # What the server took before the grammar was one.
    **{"90.5": 90.5, "500ms": 0.5, "2d": 172800.0, "10 m": 600.0, " 7s": 7.0, "7s ": 7.0, "1.5 H": 5400.0},
    **{"Forever": math.inf, " FOREVER ": math.inf, "inf": math.inf, "Infinite": math.inf, "-1": math.inf},
}
REFUSED = ["1e3", "1_000", "", ".5h", "1.s", "+5", "-5", "-1s", "-1.0", "5w", "5 min", "infinity", "nan", "1h30m"]
RANGE = "keep_alive must be between 0 and 2592000 seconds, or forever"
TOO_LONG = "721h"  # 30 days and an hour


def from_file(tmp_path: Path, value: str) -> float | None:
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = {value}\n')
    (spec,) = read_preload(config, {})
    return spec.keep_alive


@pytest.mark.parametrize(("text", "seconds"), TAKEN.items())
def test_every_reader_takes_the_same_spellings(text: str, seconds: float, tmp_path: Path) -> None:
    assert parse_settings([f"--keep-alive={text}"], {}).keep_alive == seconds
    assert parse_settings([], {"WARPCORE_KEEP_ALIVE": text}).keep_alive == seconds
    assert from_file(tmp_path, f'"{text}"') == seconds
    assert command_keep_alive(text) == ("forever" if math.isinf(seconds) else seconds)


@pytest.mark.parametrize("text", REFUSED)
def test_every_reader_refuses_the_same_spellings_saying_which_it_takes(text: str, tmp_path: Path) -> None:
    spellings = "seconds (90), a number with a unit ms, s, m, h or d (45s, 10m, 1.5h, 2d), or forever (-1, inf)"
    with pytest.raises(SettingsError) as flag:
        parse_settings([f"--keep-alive={text}"], {})
    assert str(flag.value) == f"--keep-alive must be {spellings}: {text}"
    with pytest.raises(ConfigError) as file:
        from_file(tmp_path, f'"{text}"')
    assert str(file.value).endswith(f"models[0].keep_alive must be {spellings}")
    with pytest.raises(argparse.ArgumentTypeError) as command:
        command_keep_alive(text)
    assert str(command.value) == f"must be {spellings}, not {text!r}"


def test_the_file_takes_a_number_as_its_text_and_nothing_else(tmp_path: Path) -> None:
    numbers = {"90": 90.0, "1.5": 1.5, "-1": math.inf, "inf": math.inf}  # TOML's numbers, not strings
    assert {value: from_file(tmp_path, value) for value in numbers} == numbers
    for value in ("-2", "nan", "true", "[90]"):
        with pytest.raises(ConfigError, match=r"models\[0\]\.keep_alive must be seconds \(90\)"):
            from_file(tmp_path, value)


def test_one_range_with_one_message_for_the_flag_the_file_and_grpc(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as flag:
        parse_settings(["--keep-alive", TOO_LONG], {})
    assert str(flag.value) == f"--keep-alive: {RANGE}: {TOO_LONG}"
    with pytest.raises(SettingsError) as variable:
        parse_settings([], {"WARPCORE_KEEP_ALIVE": "99999999"})
    assert str(variable.value) == f"WARPCORE_KEEP_ALIVE: {RANGE}: 99999999"
    for value in ("99999999", f'"{TOO_LONG}"'):
        with pytest.raises(ConfigError) as file:
            from_file(tmp_path, value)
        assert str(file.value).endswith(f"models[0].keep_alive: {RANGE}")


@pytest.mark.parametrize("seconds", [99999999, -1])
async def test_grpc_says_the_same_range(stub: Stub, seconds: int) -> None:
    idle = models_pb2.KeepAlive(idle=duration_pb2.Duration(seconds=seconds))
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_config=pb.ModelConfig(keep_alive=idle)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"model_config.{RANGE}"  # the field as the request names it
    assert rich_details(refused.value)[1] == ["model_config.keep_alive"]
