"""A lazy model of the preload file is checked at start as a load would check its files, without loading it: a file
that is not there (or leaves MODELS_PATH, or cannot be read) stops `warpcore-server` with one line naming the model
and the file, as a model loaded at start that fails does; only an hf: file may wait for a pull, when pulls are on."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import grpc
import pytest

from tests.conftest import TINY_MODEL
from tests.server_process import start
from tests.tiny_model import write_tiny_model
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

MISSING_HF = "hf:warpcore/absent:absent.gguf"


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """A MODELS_PATH of this test's own, with the tiny model, a link out of it, and a folder named like a model."""
    root, outside = tmp_path / "models", tmp_path / "outside"
    tiny = write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    outside.mkdir()
    shutil.copyfile(tiny, outside / "secret.gguf")
    (root / "escape.gguf").symlink_to(outside / "secret.gguf")
    (root / "folder.gguf").mkdir()
    return root


def lazy_config(tmp_path: Path, model: str, local: str = "") -> Path:
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nid = "later"\nbackend = "llama_cpp"\nmodel = "{model}"\nlazy = true\n{local}')
    return config


async def outcome(process: asyncio.subprocess.Process) -> tuple[int | None, list[str]]:
    """The exit status and stderr lines of a server that stopped at start, or (None, lines so far) once it serves."""
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while line := (await process.stderr.readline()).decode():
            lines.append(line.rstrip("\n"))
            if "serving on" in line:
                return None, lines
        return await process.wait(), lines


@pytest.mark.parametrize(
    ("model", "local", "said"),
    [
        ("nowhere/absent.gguf", "", "model file nowhere/absent.gguf was not found under MODELS_PATH"),
        ("./nowhere//absent.gguf", "", "model file nowhere/absent.gguf was not found under MODELS_PATH"),
        (
            MISSING_HF,
            "",
            "model file hf/warpcore/absent/absent.gguf was not found under MODELS_PATH; pull it first"
            f" (`warpcore pull {MISSING_HF}`, if the server allows pulls)",
        ),
        (
            "../outside/secret.gguf",
            "",
            "model '../outside/secret.gguf' must stay inside MODELS_PATH: give a path relative to it, without '..'",
        ),
        ("escape.gguf", "", "model 'escape.gguf' is a link to a file outside MODELS_PATH, which is not served"),
        ("folder.gguf", "", "model file folder.gguf cannot be read under MODELS_PATH"),
        (
            TINY_MODEL,
            '[models.local]\nmmproj = "absent-mmproj.gguf"\n',
            "mmproj file absent-mmproj.gguf was not found under MODELS_PATH",
        ),
    ],
    ids=["missing", "missing-respelled", "hf-without-pulls", "dot-dot", "link-out", "folder", "mmproj"],
)
async def test_a_lazy_model_whose_file_cannot_load_stops_the_start_naming_it(
    models_root: Path, tmp_path: Path, model: str, local: str, said: str
) -> None:
    config = lazy_config(tmp_path, model, local)
    status, lines = await outcome(await start(models_root, "--config", str(config)))
    shown = model.removeprefix("./").replace("//", "/")  # the model's name as registered
    assert (status, lines) == (1, [f"warpcore-server: cannot declare lazy startup model 'later' ({shown}): {said}"])


async def test_the_failure_is_one_json_line_with_json_logs(models_root: Path, tmp_path: Path) -> None:
    config = lazy_config(tmp_path, "nowhere/absent.gguf")
    status, lines = await outcome(await start(models_root, "--config", str(config), "--log-format", "json"))
    assert status == 1
    assert [json.loads(line)["message"] for line in lines] == [
        "warpcore-server: cannot declare lazy startup model 'later' (nowhere/absent.gguf): model file"
        " nowhere/absent.gguf was not found under MODELS_PATH"
    ]


async def test_a_missing_hf_file_may_wait_for_a_pull_when_pulls_are_on(models_root: Path, tmp_path: Path) -> None:
    config = lazy_config(tmp_path, MISSING_HF)
    process = await start(models_root, "--config", str(config), "--log-format", "json", "--allow-pull")
    try:
        status, lines = await outcome(process)
        assert status is None, lines
        messages = [json.loads(line)["message"] for line in lines]
        assert (
            f"lazy model later: {MISSING_HF} is not under {models_root} yet; pull it (`warpcore pull {MISSING_HF}`)"
            " before the first call naming it"
        ) in messages
        port = int(messages[-1].split("127.0.0.1:")[1].split(",")[0])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            listed = await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(pb.ListModelsRequest())
        assert [(model.id, model.name, model.state) for model in listed.models] == [
            ("later", MISSING_HF, pb.MODEL_STATE_AVAILABLE)
        ]
    finally:
        process.kill()
        await process.wait()


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (
            '[[models]]\nid = "later"\nbackend = "llama_cpp"\nmodel = "tiny.gguf"\nlazy = true\n'
            '[models.local]\nchat_format = "bogus"\n',
            "{config}: models[0].local.chat_format: chat_format must be one of alpaca, chatml, gemma, llama-2,"
            " llama-3, mistral-instruct, zephyr",
        ),
        (
            '[[models]]\nid = "later"\nbackend = "openai"\nmodel = "gpt-x"\nlazy = true\n',
            "cannot declare lazy startup model 'later' (gpt-x): no openai API key: set OPENAI_API_KEY in the server's"
            " environment, or, where the server takes keys from clients (--api-overrides),"
            " backend_config.api.api_key in the request",
        ),
    ],
    ids=["chat-format", "hosted-without-key"],
)
async def test_a_lazy_model_whose_settings_cannot_load_stops_the_start(
    models_root: Path, tmp_path: Path, entry: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: such a model started, and its first call failed (INVALID_ARGUMENT, FAILED_PRECONDITION)."""
    config = tmp_path / "models.toml"
    config.write_text(entry)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # unset: set but empty stops the start, naming it
    process = await start(models_root, "--config", str(config))
    assert await outcome(process) == (1, [f"warpcore-server: {said.format(config=config)}"])
