"""The bounds of every request and setting, and the parsers of words that several front doors accept: one place
per rule, whatever reads it (gRPC requests, the preload file, the environment, the command line)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from warpcore._media import PDF
from warpcore.server.core.domain import NumaStrategy
from warpcore.server.core.embeddings import Pooling

_P = ParamSpec("_P")
_T = TypeVar("_T")

MAX_TOKENS_LIMIT = 32768
"""The largest max_tokens a request may ask for, unless the server is started with a lower limit."""
DEFAULT_MAX_TOKENS = 256
"""The max_tokens of a request that names none, unless the server's limit is lower (Limits.default_max_tokens)."""
MIN_CONTEXT_SIZE = 16
MAX_CONTEXT_SIZE = 131072
MAX_PARALLEL = 64
"""Generations one local model decodes together, at most."""
MAX_THREADS = 1024
MAX_GPU_LAYERS = 2**31 - 1
"""LocalBackendConfig.gpu_layers is an int32, as llama.cpp's n_gpu_layers; the file and the environment are held to
it too."""
MAX_STOP_SEQUENCES = 16
MAX_STOP_SEQUENCE_CHARS = 1000  # each is looked for in the text after every token
MAX_TOP_K = 2**32 - 1
"""The gRPC field's type, uint32; what a door reads is held to it too."""
MAX_TOKEN_COUNT = 2**32 - 1
"""The most tokens a usage count may say (the gRPC Usage fields' type, uint32): an upstream's larger or negative
count is no count at all."""
MAX_SEED = 2**32 - 1
"""Seeds are unsigned 32-bit (the gRPC field's type, and llama.cpp's sampler's)."""
MAX_ID_LENGTH = 256
"""The longest id or name a request may give (a model id, a GGUF file's name); a longer value the server quotes in a
log line is cut here (`shortened`)."""
BODY_READ_SECONDS = 60.0
"""Most seconds an HTTP request's body may take to arrive, 4 MiB at 70 kB/s: a client that sends it slower (or
never) holds a connection for nothing."""
HEAD_READ_SECONDS = 60.0
"""Most seconds an HTTP connection waits for a request's head to arrive whole, from its start and after each answer
(its keep-alive timeout): a client that never finishes one (slowloris) would hold a connection, and a file
descriptor, for nothing."""
MAX_URL_LENGTH = 2048  # the common bound of HTTP clients and servers on a URL
MAX_REQUEST_ID = 128
"""Characters of a request id, a caller's or an upstream's: a UUID, a trace id, "req_" and 24-32 characters; far
more is no id, and would fill frames and logs."""
REQUEST_ID_CHARACTER = r"[\x21-\x7e]"
"""Printable ASCII but the space: nothing that forges a log line or a field, or needs decoding."""
REQUEST_ID = re.compile(f"{REQUEST_ID_CHARACTER}{{1,{MAX_REQUEST_ID}}}")
"""A caller's request id either door takes as it is."""
MAX_RETRY_AFTER = 86400.0
"""The longest wait before a retry that an upstream's Retry-After may tell a caller, in seconds; longer is cut to it."""
MAX_REMEMBERED_REASONING = 4096
"""Answers with tool calls whose signed reasoning the HTTP door's Chat Completions route keeps, to give it back on the
next turn (http/reasoning_memory.py); a few KiB each."""
MAX_TOP_LOGPROBS = 20
"""Most likely tokens a generation may report at each place (OpenAI's own limit)."""
MAX_LOGIT_BIAS = 100.0
"""Largest bias of a token's score, either way (OpenAI's range)."""
MAX_BIASED_TOKENS = 1024
"""Most tokens one request may bias."""
VERBOSITY_LEVELS = ("low", "medium", "high")
"""How much an answer may say (OpenAI's verbosity)."""
MAX_BETAS = 16
BETA_NAME = re.compile("[a-z0-9-]{1,64}")
"""An Anthropic beta's name, as interleaved-thinking-2025-05-14: never a header's separator or control character."""
MIN_THINKING_BUDGET = 1024
"""The smallest thinking budget the Anthropic API takes; a budget is less than max_tokens, so thinking there needs
a max_tokens above it."""
MAX_CACHE_BREAKPOINTS = 4
"""Places in one request where a hosted API is asked to cache the prompt (Anthropic's limit)."""
MAX_IMAGES = 20
"""Images in one request, at most (Anthropic's limit for many images per request)."""
MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""The largest image a request may carry (Anthropic's API limit; OpenAI's is larger)."""
MAX_LOCAL_IMAGE_PIXELS = 50_000_000
"""Pixels a request's images may hold in all on a local model, which decodes them whole (3 bytes each) before its
projector scales them down: a 48-megapixel photo fits; a PNG of a few hundred kilobytes holding gigabytes does not."""
MAX_DOCUMENTS = 20
"""Documents in one request, at most."""
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
"""The largest document a request may carry (Anthropic's limit for a whole request; OpenAI's for a file is larger)."""
DOCUMENT_MEDIA_TYPES = (PDF,)
"""The document types both hosted APIs read."""
MAX_EMBED_INPUTS = 2048
"""Texts in one Embed call, at most (OpenAI's own limit)."""
MAX_EMBED_DIMENSIONS = 65536
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest request a front door accepts, unless the server is started with another limit."""
MAX_TOOLS = 128
"""Tools one request may declare (OpenAI's own limit)."""
MAX_SCHEMA_BYTES = 64 * 1024
"""The longest JSON Schema (a tool's parameters, a response format's schema), in bytes of JSON text."""
MAX_SCHEMA_DEPTH = 64
"""The deepest nesting of objects and arrays in a JSON Schema or in a tool call's arguments."""
MAX_TOOL_ARGUMENTS_BYTES = 256 * 1024
"""The longest arguments of a tool call sent back in a conversation, in bytes of JSON text."""
CHECK_ON_THREAD_BYTES = 64 * 1024
"""The tool-call arguments (characters of JSON text), or the HTTP door's request body (bytes), beyond which a request is
read and checked on a thread: parsing and checking megabytes takes a good part of a second, during which the event
loop would serve no other call."""

SMALLEST_MESSAGE_BYTES = len('{"role":"user","content":""},')
"""The least JSON a message of a conversation takes, by which a request's messages count towards CHECK_ON_THREAD_BYTES
where its size is not its JSON's (a gRPC request, a domain one): each costs its reading and checks time, however
short it is."""


async def read_off_loop_when_large(size: int, read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`read(*args, **kwargs)`, which parses and checks `size` characters or bytes of JSON: on a thread beyond
    CHECK_ON_THREAD_BYTES, else at once (a thread's hop would cost a small request more than its reading)."""
    if size > CHECK_ON_THREAD_BYTES:
        return await asyncio.to_thread(read, *args, **kwargs)
    return read(*args, **kwargs)


TOOL_NAME_PATTERN = r"[a-zA-Z0-9_-]{1,64}"
"""A tool's or a response schema's name, as the providers accept it."""

MAX_DORMANT_MODELS = 256
"""Models unloaded for idleness or room that the server remembers, to load again when a Generate names them."""

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
NUMA_NAMES = tuple(name.lower() for name in NumaStrategy.__members__)
POOLING_NAMES = tuple(name.lower() for name in Pooling.__members__)
CHAT_FORMAT_NAMES = ("alpaca", "chatml", "gemma", "llama-2", "llama-3", "mistral-instruct", "zephyr")
"""The chat formats a local model may name (llama/chat.py renders each), checked without loading anything."""


def parse_bool(word: str) -> bool | None:
    """True or False for the words a person writes for them, None for anything else."""
    lowered = word.strip().lower()
    return True if lowered in TRUE_WORDS else False if lowered in FALSE_WORDS else None


def parse_numa(name: str) -> NumaStrategy | None:
    """The NUMA strategy a name (any case) stands for, None for an unknown name."""
    return NumaStrategy.__members__.get(name.strip().upper())


_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?")


def parse_bytes(word: str) -> int | None:
    """Bytes for "1048576", "512M", "2GiB", "1.5g" (powers of 1024); None for anything else."""
    match = _BYTES.fullmatch(word.strip().lower())
    if match is None:
        return None
    unit = (match[2] or "b")[0]
    return int(float(match[1]) * 1024 ** "bkmgt".index(unit))


# Grammar-constrained sampling (local models) spells a JSON Schema out as a grammar: these caps bound what one
# request's grammar costs to build, parse and run, whatever the schema.
GRAMMAR_MAX_SCHEMA_NODES = 1000
"""Subschemas (counted after inlining every $ref) one generation's grammar is built from, over all its schemas."""
GRAMMAR_MAX_SCHEMA_DEPTH = 32
"""How deeply one schema's subschemas may nest (with every $ref inlined)."""
GRAMMAR_MAX_OPTIONAL_PROPERTIES = 100
"""Optional properties of one object: their grammar grows with the square of their number."""
GRAMMAR_MAX_REPEAT = 256
"""The largest count a grammar spells out: minItems, maxItems, minLength, maxLength, a pattern's {m,n}."""
GRAMMAR_MAX_BYTES = 256 * 1024
"""The largest grammar (GBNF text) one generation may be constrained by."""


def parse_pooling(name: str) -> Pooling | None:
    """The pooling a name (any case) stands for, None for an unknown name."""
    return Pooling.__members__.get(name.strip().upper())


MAX_ERROR_MESSAGE_BYTES = 1024
"""The longest error message a caller gets, in UTF-8, at either door. A gRPC status's travels twice (grpc-message,
percent-encoded, and in the rich details), and a client refuses a status whose metadata passes its limit (8 KiB by
default) with a transport error of its own, which hides the refusal; an HTTP error body quoting a caller's value whole
would send back more than the caller sent. Only a message quoting a caller's long value comes near it."""


def fitted_message(message: str) -> str:
    """`message`, or as much of it as fits in MAX_ERROR_MESSAGE_BYTES with how long it was; a character UTF-8 cannot
    hold (an unpaired surrogate a caller's value brought in) as a question mark."""
    encoded = message.encode(errors="replace")
    if len(encoded) <= MAX_ERROR_MESSAGE_BYTES:
        return encoded.decode()
    tail = f"... ({len(message)} characters)"
    return encoded[: MAX_ERROR_MESSAGE_BYTES - len(tail)].decode(errors="ignore") + tail


def shortened(text: str, limit: int = MAX_ID_LENGTH) -> str:
    """`text`, or its first `limit` characters and how long it was: what the server writes, unquoted, of a value a
    caller chose (in a log line, a field's name), which may be megabytes; an error message quotes one with `quoted`."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


MAX_QUOTED_BYTES = MAX_ERROR_MESSAGE_BYTES // 2
"""The most UTF-8 of a caller's value one error message quotes: the rest of the message, which says what is wrong,
keeps the other half."""


def quoted(value: object) -> str:
    """How an error message quotes a value a caller chose, at either door: as Python's repr (quote marks; a character
    that does not print, a zero-width joiner or a control, escaped so that it shows), cut after its first
    MAX_ID_LENGTH characters or MAX_QUOTED_BYTES, with how many characters the value had. A value that is no string
    is quoted as its repr is."""
    text = value if isinstance(value, str) else repr(value)
    sizes = itertools.accumulate(len(char.encode(errors="surrogatepass")) for char in text[:MAX_ID_LENGTH])
    kept = sum(1 for size in sizes if size <= MAX_QUOTED_BYTES)
    shown = repr(text[:kept]) if isinstance(value, str) else text[:kept]
    return shown if kept == len(text) else f"{shown}... ({len(text)} characters)"


NOT_A_URL = "is not a URL: it names no host, or a port that is not a number"


def url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """What keeps `value` from being a URL of one of `schemes` whose host and port an HTTP client can use, said of
    it ("must be https://"), or None. The scheme is case-insensitive (RFC 3986: HTTPS:// is https://); a space, a
    control character or a letter outside ASCII is no URL's until percent-encoded (or, in a host, IDNA-encoded), which
    is the caller's to do: a URL changed on the way would not be the one the caller checked."""
    try:
        parts = urlsplit(value)
    except ValueError:  # a bracketed host that is no IPv6 address
        return NOT_A_URL
    if parts.scheme not in schemes:
        return f"must be {' or '.join(f'{scheme}://' for scheme in schemes)}"
    if not value.isascii():
        return "is not ASCII: write its host as IDNA (xn--...) and percent-encode the rest"
    if not value.isprintable() or " " in value:
        return "holds a space or a control character: percent-encode it (%20)"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        if parts.hostname:
            parts.hostname.encode("idna")  # a label empty or over 63 characters
    except (ValueError, UnicodeError):
        return NOT_A_URL
    return None if parts.hostname else NOT_A_URL


def holds_credentials(url: str) -> bool:
    """Whether `url` holds user info (user:password@): the SDKs and huggingface_hub send it as Basic auth, whose
    base64 scrubbing would have to find wherever an upstream quotes it."""
    return "@" in urlsplit(url).netloc


def is_http_url(value: str) -> bool:
    """An http(s) URL whose host and port an HTTP client can use."""
    return url_problem(value, ("http", "https")) is None
