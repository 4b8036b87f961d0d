"""The warpcore Python SDK: Client and AsyncClient over the warpcore.v1 gRPC API."""

import importlib.metadata

from warpcore.client._async_client import AsyncClient
from warpcore.client._channel import DEFAULT_TARGET, ClientOptions
from warpcore.client._checks import OptionError
from warpcore.client._client import Client
from warpcore.client._errors import (
    AlreadyExistsError,
    AuthenticationError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    UnavailableError,
    UnimplementedError,
    WarpcoreError,
)
from warpcore.client._messages import Cache, Document, Image, Message, ReasoningBlock, Text, Tool, ToolCall
from warpcore.client._models import Capabilities, KeepAliveLike, Model, ModelState, ModelType, Residency
from warpcore.client._options import (
    BackendOptions,
    BaseGenerationOptions,
    GenerationOptions,
    NumaStrategy,
    Pooling,
    ReasoningEffort,
    ResponseModelClass,
    Verbosity,
)
from warpcore.client._pull import PulledModel, PullEvent, PullProgress
from warpcore.client._stream import AsyncStream, Stream
from warpcore.client._types import (
    ApiConfig,
    Backend,
    EmbedResponse,
    FinishReason,
    GenerateResponse,
    GenerateResult,
    LocalConfig,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Timings,
    Token,
    TokenCount,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

try:
    __version__ = importlib.metadata.version("warpcore-client")
except importlib.metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "unknown"

__all__ = [
    "DEFAULT_TARGET",
    "AlreadyExistsError",
    "ApiConfig",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "Backend",
    "BackendOptions",
    "BaseGenerationOptions",
    "Cache",
    "CancelledError",
    "Capabilities",
    "Client",
    "ClientOptions",
    "DeadlineExceededError",
    "Document",
    "EmbedResponse",
    "FailedPreconditionError",
    "FinishReason",
    "GenerateResponse",
    "GenerateResult",
    "GenerationOptions",
    "Image",
    "InternalError",
    "InvalidArgumentError",
    "KeepAliveLike",
    "LocalConfig",
    "Message",
    "MessageTooLargeError",
    "Model",
    "ModelState",
    "ModelType",
    "NotFoundError",
    "NumaStrategy",
    "OptionError",
    "PermissionDeniedError",
    "Pooling",
    "PullEvent",
    "PullProgress",
    "PulledModel",
    "RateLimitError",
    "ReasoningBlock",
    "ReasoningDelta",
    "ReasoningEffort",
    "Residency",
    "ResponseModelClass",
    "ResponseParseError",
    "Stream",
    "StreamEvent",
    "Text",
    "TextDelta",
    "Timings",
    "Token",
    "TokenCount",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "UnavailableError",
    "UnimplementedError",
    "Usage",
    "Verbosity",
    "WarpcoreError",
]
