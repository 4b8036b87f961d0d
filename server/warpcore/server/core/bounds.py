"""The bounds of every request and setting, and the parsers of words that several front doors accept: one place
per rule, whatever reads it (gRPC requests, the preload file, the environment, the command line)."""

from __future__ import annotations

from warpcore.server.core.domain import NumaStrategy, Pooling

MAX_TOKENS_LIMIT = 32768
"""The largest max_tokens a request may ask for, unless the server is started with a lower limit."""
DEFAULT_MAX_TOKENS = 256
MIN_CONTEXT_SIZE = 16
MAX_CONTEXT_SIZE = 131072
MAX_PARALLEL = 64
"""Generations one local model decodes together, at most."""
MAX_THREADS = 1024
MAX_STOP_SEQUENCES = 16
MAX_ID_LENGTH = 256
MAX_TIMEOUT_SECONDS = 86400
MAX_TOP_LOGPROBS = 20
"""Most likely tokens a generation may report at each place (OpenAI's own limit)."""
MAX_IMAGES = 20
"""Images in one request, at most (Anthropic's limit for many images per request)."""
MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""The largest image a request may carry (Anthropic's API limit; OpenAI's is larger)."""
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The image types both hosted APIs accept."""
MAX_EMBED_INPUTS = 2048
"""Texts in one Embed call, at most (OpenAI's own limit)."""
MAX_EMBED_DIMENSIONS = 65536
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest request a front door accepts, unless the server is started with another limit."""

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
NUMA_NAMES = tuple(name.lower() for name in NumaStrategy.__members__)
POOLING_NAMES = tuple(name.lower() for name in Pooling.__members__)


def parse_bool(word: str) -> bool | None:
    """True or False for the words a person writes for them, None for anything else."""
    lowered = word.strip().lower()
    return True if lowered in TRUE_WORDS else False if lowered in FALSE_WORDS else None


def parse_numa(name: str) -> NumaStrategy | None:
    """The NUMA strategy a name (any case) stands for, None for an unknown name."""
    return NumaStrategy.__members__.get(name.strip().upper())


def parse_pooling(name: str) -> Pooling | None:
    """The pooling a name (any case) stands for, None for an unknown name."""
    return Pooling.__members__.get(name.strip().upper())
