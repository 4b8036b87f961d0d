"""The shutdown's answers: a local stream cut while its decode step runs long still counts its tokens exactly; any other
call still open when the grace ends (a load, a pull, calls waiting for a lazy model) gets UNAVAILABLE (SHUTTING_DOWN),
which the access log records as the client saw it; a second signal ends the process even while llama.cpp is loading a
model.

Long native steps are made by holding the thread that runs them where it writes a llama.cpp log line: llama.cpp's log
goes through Python logging (native_log.py), so a filter on its logger runs on that thread, in the step.

What the modules of this package share: the llama.cpp log lines held, the hold itself, and a load request. The fixture
(the models, a seeing one among them) is in `conftest`; the tests in `test_*`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tests.conftest import TINY_MODEL
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    pass


WAIT_SECONDS = 30  # a timeout turns a hang into a failure
IMAGE_DECODE_LINE = "decoding image batch"
"""What llama.cpp's multimodal helper logs as it decodes an image's embeddings, inside a decode step."""
MODEL_LOAD_LINE = "load_tensors"
"""What llama.cpp logs as it reads a model's weights, inside a load (after the vocabulary, which is read with the
process's stderr sent to /dev/null)."""


class Held(logging.Filter):
    """Holds the first thread that logs a line holding `needle` until `release` is set. A filter of the logger, not
    a handler: a handler would hold its lock meanwhile, and so every other thread's line."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.holding = threading.Event()
        self.release = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.needle in record.getMessage() and not self.holding.is_set():
            self.holding.set()
            self.release.wait()
        return False  # llama.cpp's debug lines are not the test's

    async def held(self) -> None:
        assert await asyncio.to_thread(self.holding.wait, WAIT_SECONDS), f"nothing logged {self.needle!r}"


@contextlib.contextmanager
def holding(needle: str) -> Iterator[Held]:
    native = logging.getLogger("llama.cpp")
    level, held = native.level, Held(needle)
    native.setLevel(logging.DEBUG)
    native.addFilter(held)
    try:
        yield held
    finally:
        held.release.set()
        native.removeFilter(held)
        native.setLevel(level)


def load_request(model_id: str, **local: object) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        model_config=pb.ModelConfig(context_size=32768),
        backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(**local)),  # type: ignore[arg-type]
    )
