"""The process's log output: plain text, or one JSON object per line with a request's fields when it has them."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from warpcore.server.adapters.redaction import redact_key_shapes

REQUEST_FIELDS = (
    "protocol",
    "method",
    "model",
    "code",
    "duration_ms",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "ended_by",
    "peer",
    "request_id",
    "upstream_request_id",
)


# Every line goes through redact_key_shapes: a traceback quotes exceptions whole, and a vendor SDK's exception may
# quote the key an upstream echoed.


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # RFC 3339 in UTC, to the millisecond: a collector orders and joins lines from hosts in any time zone.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in REQUEST_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # Before encoding: JSON's escapes (\t, \n) would join a key to the letter before it, out of the pattern's reach.
        return json.dumps(
            {name: redact_key_shapes(value) if isinstance(value, str) else value for name, value in entry.items()}
        )


class TextFormatter(logging.Formatter):
    """Time, level, logger and message, then a request's fields as name=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = "".join(f" {name}={_value(getattr(record, name))}" for name in REQUEST_FIELDS if hasattr(record, name))
        return super().formatMessage(record) + fields

    def format(self, record: logging.LogRecord) -> str:
        return redact_key_shapes(super().format(record))


def _value(value: object) -> str:
    """A field's value as one word: a caller chooses some of them (a model id, before it is checked), and a line
    break or a space in one would let it forge a line or a field of its own. Such a value is written as a JSON
    string, quoted and escaped."""
    text = redact_key_shapes(str(value))  # before quoting: its escapes would join a key to the letter before it
    if text and text.isprintable() and not any(character in text for character in ' "='):
        return text
    return json.dumps(text)


QUIET_LIBRARIES = ("httpx", "httpx2")
"""Libraries that log every request they send at INFO: the access log already has a line per call, and an upstream's
failures reach it as the call's error."""


LIBRARY_HANDLERS = {"huggingface_hub": "huggingface_hub.utils.logging"}
"""Library loggers that get a handler of their own when the named module is first imported (huggingface_hub's writes
plain text to stderr, and its records propagate to ours as well, so each of its warnings came out twice, once not
formatted): the module is imported here, before any pull would import it, and that handler removed, so that every
line goes through the process's formatter, once."""


class PeerCausedGrpcErrors(logging.Filter):
    """grpc's Python layer logs an ERROR with a traceback for what a peer did, nothing to page an operator for, and as
    often as a peer likes. Such a record is a debug line without the traceback or its values, written only when debug
    lines are:

    - a call's status could not be sent (ExecuteBatchError) because its client cancelled the call just then: the
      client's choice, which the access log records;
    - a value of a call's metadata is not UTF-8, and gRPC read it as Latin-1 (gRPC's own clients refuse to send such
      bytes; a raw HTTP/2 client may): grpc quoted the value whole, and it may be an attempted token. The call goes on
      with the value as read: such a token matches none, and such a request id is not taken."""

    def filter(self, record: logging.LogRecord) -> bool:
        note = _peer_caused(record)
        if note is None:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        record.msg, record.args = note, None
        record.exc_info = record.exc_text = None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _peer_caused(record: logging.LogRecord) -> str | None:
    """The debug line for a record of grpc's that a peer caused, None for any other (a servicer's own
    UnicodeDecodeError is a fault of ours, and stays an error)."""
    error = record.exc_info[1] if record.exc_info else None
    if type(error).__name__ == "ExecuteBatchError":
        return "a call's status was not sent: its client had just cancelled it"
    if isinstance(error, UnicodeDecodeError) and record.msg == "Invalid encoding on %s":
        return "a call's metadata held a value that is not UTF-8, read as Latin-1 (the value is not logged)"
    return None


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(_own_stderr())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
    grpc_log = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(own, PeerCausedGrpcErrors) for own in grpc_log.filters):
        grpc_log.addFilter(PeerCausedGrpcErrors())
    for name, module in LIBRARY_HANDLERS.items():
        with contextlib.suppress(ImportError):  # a library not installed adds no handler either
            importlib.import_module(module)
        library_logger = logging.getLogger(name)
        for own in library_logger.handlers[:]:
            library_logger.removeHandler(own)
        library_logger.propagate = True


def _own_stderr() -> TextIO:
    """The process's standard error on a descriptor of the log's own: llama-cpp-python points descriptor 2 at
    /dev/null while it reads a model's vocabulary, which would lose every line the server logs meanwhile."""
    try:
        descriptor = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream): nothing redirects it either
        return sys.stderr
    return os.fdopen(os.dup(descriptor), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
