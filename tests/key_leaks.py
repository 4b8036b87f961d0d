"""Finding an API key in what a server sent or logged: distinctive keys, a transcript of calls, and the leak check.

Shared by tests/test_secret_leaks_server.py (a whole server process), whose keys in play are here too,
tests/test_secret_leaks_redaction.py (the leak check and redaction) and tests/test_api_backend_keys.py (request ids).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message
from grpc_status import rpc_status

from tests.conftest import rich_details

FRAGMENT = 8  # characters of a key that still identify it


@dataclass(frozen=True)
class Key:
    """A distinctive API key: a vendor's public prefix, then characters no other text here contains."""

    name: str
    prefix: str
    body: str

    @property
    def value(self) -> str:
        return self.prefix + self.body

    def fragments(self) -> set[str]:
        """Every run of FRAGMENT characters that reaches into the body: any of them gives the key away."""
        start = max(len(self.prefix) - FRAGMENT + 1, 0)
        return {self.value[i : i + FRAGMENT] for i in range(start, len(self.value) - FRAGMENT + 1)}


@dataclass
class Transcript:
    """Everything that came out of the server, as text, and how each call ended."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""

    def joined(self, label: str) -> str:
        return "\n".join(text for name, text in self.texts if name == label)

    def add(self, label: str, message: Message | str | bytes) -> None:
        if isinstance(message, Message):
            self.texts.append((label, text_format.MessageToString(message)))
            message = message.SerializeToString()
        # latin-1 maps every byte to one character: a key in a serialized message shows verbatim.
        self.texts.append((label, message.decode("latin-1") if isinstance(message, bytes) else message))

    def add_error(self, label: str, error: grpc.aio.AioRpcError) -> None:
        self.outcomes[label] = error.code().name
        self.add(label, error.details() or "")
        self.add(label, error.debug_error_string() or "")
        status = rpc_status.from_call(error)
        if status is not None:
            self.add(label, status)
            info, _ = rich_details(error)
            self.add(label, info)

    async def call(self, label: str, call: grpc.aio.Call) -> None:
        """Awaits a unary call or reads a stream to its end, recording every message or the error, and the
        metadata."""
        try:
            if isinstance(call, grpc.aio.UnaryStreamCall):
                async for frame in call:
                    self.add(label, frame)
            else:
                assert isinstance(call, grpc.aio.UnaryUnaryCall)
                self.add(label, await call)
            self.outcomes[label] = "OK"
        except grpc.aio.AioRpcError as error:
            self.add_error(label, error)
        for key, value in [*(await call.initial_metadata() or ()), *(await call.trailing_metadata() or ())]:
            self.add(f"{label} metadata {key}", value)


def leaks(texts: Iterable[tuple[str, str]], key: Key) -> list[str]:
    """Where a text holds the key or a fragment of it, with the fragment in its context."""
    found = []
    for label, text in texts:
        for fragment in key.fragments() & {text[i : i + FRAGMENT] for i in range(len(text) - FRAGMENT + 1)}:
            at = text.index(fragment)
            found.append(f"{label}: {text[max(at - 60, 0) : at + 60]!r}")
            break
    return found


OPENAI_KEY = Key("OPENAI_API_KEY", "sk-proj-", "Qw7ZtLm2RbXc9VhNk4FsJd8GpYa3EuWoTi6B")
ANTHROPIC_KEY = Key("ANTHROPIC_API_KEY", "sk-ant-api03-", "Hc5VnR8xKb2MqLz7TfWj4YdPs9GaNe3UoXi1")
# Not shaped like a vendor key, so only the server's knowledge of the exact key can scrub it.
REQUEST_KEY = Key("ApiConfig.api_key", "", "CanaryReqKey7Vw3Zq9Lm2Xt5Rb8Nc4Hj6Pd")
