"""One keep_alive grammar and one range for every place that reads one: the server's --keep-alive (and
WARPCORE_KEEP_ALIVE), its config file, the `warpcore load --keep-alive` command, and LoadModel over gRPC. The file
took "10 m" and " 7s" where the command refused "10 m" but took 1e3 and 1_000, and each said its own range."""

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
from warpcore.server.settings import SettingsError, parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TAKEN = {"0": 0.0, "90": 90.0, "45s": 45.0, "10m": 600.0, "1.5h": 5400.0, "0.5s": 0.5, "forever": math.inf}
REFUSED = ["10 m", " 7s", "7s ", "1e3", "1_000", "-1", "90.5", "5d", "500ms", "Forever", "inf", "", ".5h", "1.s", "+5"]
RANGE = "keep_alive must be between 0 and 2592000 seconds, or forever"
TOO_LONG = "721h"  # 30 days and an hour


def from_file(tmp_path: Path, value: str) -> float | None:
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = {value}\n')
    (spec,) = read_preload(config, {})
    return spec.keep_alive


@pytest.mark.parametrize(("text", "seconds"), TAKEN.items())
def test_every_reader_takes_the_same_spellings(text: str, seconds: float, tmp_path: Path) -> None:
    assert parse_settings(["--keep-alive", text], {}).keep_alive == seconds
    assert parse_settings([], {"WARPCORE_KEEP_ALIVE": text}).keep_alive == seconds
    assert from_file(tmp_path, f'"{text}"') == seconds
    assert command_keep_alive(text) == ("forever" if math.isinf(seconds) else seconds)


@pytest.mark.parametrize("text", REFUSED)
def test_every_reader_refuses_the_same_spellings_saying_which_it_takes(text: str, tmp_path: Path) -> None:
    spellings = "whole seconds (90), a number with a unit s, m or h (45s, 10m, 1.5h), or forever"
    with pytest.raises(SettingsError) as flag:
        parse_settings(["--keep-alive", text], {})
    assert str(flag.value) == f"--keep-alive must be {spellings}: {text}"
    with pytest.raises(ConfigError) as file:
        from_file(tmp_path, f'"{text}"')
    assert str(file.value).endswith(f"models[0].keep_alive must be {spellings}")
    with pytest.raises(argparse.ArgumentTypeError) as command:
        command_keep_alive(text)
    assert str(command.value) == f"must be {spellings}, not {text!r}"


def test_the_file_takes_whole_seconds_as_a_number_and_nothing_else(tmp_path: Path) -> None:
    assert from_file(tmp_path, "90") == 90
    for value in ("1.5", "true", "[90]"):
        with pytest.raises(ConfigError, match=r"models\[0\]\.keep_alive must be whole seconds"):
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
