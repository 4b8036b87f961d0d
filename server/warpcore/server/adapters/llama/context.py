"""The native llama.cpp objects a model decodes with: its weights, one context with a KV cache for every slot, and
the batch that carries a decode step's tokens."""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import llama_cpp

from warpcore.server.adapters.llama.model_paths import ModelFile
from warpcore.server.adapters.llama.options import LlamaOptions
from warpcore.server.core.errors import FailedPreconditionError

_log = logging.getLogger(__name__)
_LIBC = ctypes.CDLL(None)

STEP_TOKENS = 512  # most tokens in one llama_decode call (llama.cpp's n_batch)
# Beside running generations a prompt enters the KV cache in llama_decode calls of at most this many tokens, so that
# it never stalls them for long. A model that fails prefill.py's probe takes every prompt in pieces of this many
# counted from its first token, whatever runs beside it, and its cached beginnings end where a piece does.
PREFILL_PIECE = 32
# Rows from which a llama.cpp call gives a row the same cells and logits however many rows it holds (prefill.py).
MIN_CALL_ROWS = 8
# A prompt no running generation waits beside goes in calls of up to this many tokens: fewer calls, each with
# llama.cpp's fixed cost per call, while a cancel or a newcomer still waits for at most one.
LONE_PREFILL_PIECE = 128
KV_BYTES_PER_VALUE = 2  # llama.cpp's default KV cache type is f16
LOGIT_COPIES = 2
"""Where llama.cpp holds a decode's logits: its compute graph and its output buffer, each a row per output token."""
FLOAT_BYTES = 4
DEFAULT_CONTEXT_SIZE = 4096  # tokens, when the request names none and the model was trained on more
FILE_SHAPES_KEPT = 64  # model files whose context and KV cell size are remembered


@dataclass(frozen=True)
class LoadedWeights:
    """Where the weights are (an open ModelFile's path) and how to hold them."""

    path: Path
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool

    def load(self, *, repack: bool) -> llama_cpp.llama_model_p:
        """The native model; `repack` lets llama.cpp lay the weights out for its fastest CPU kernels."""
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = self.gpu_layers
        model_params.use_mmap = self.use_mmap
        model_params.use_mlock = self.use_mlock
        model_params.use_extra_bufts = repack
        model: llama_cpp.llama_model_p = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not model:
            raise FailedPreconditionError("llama.cpp could not load the model's weights", reason="MODEL_LOAD_FAILED")
        return model


class NativeContext:
    """Weights loaded without CPU repacking (repacked kernels change a row's logits with the number of rows decoded
    together; see invariance.py), and a KV cache stream of its own per slot: in one stream shared by all slots, a
    sequence's cells sit wherever they were free, among its neighbours', and attention sums them in another order,
    which changes its logits (and log-probabilities) in the last bits with what runs beside it.

    Without flash attention: for a lone sequence with 512 or more KV cells, llama.cpp's CPU flash attention splits
    the cells between its threads at the middle of the cache and adds the partial sums, where with neighbours, or
    fewer cells, it sums them in one pass; the split also falls elsewhere among a sequence's cells once a cached
    beginning is restored (without the cells that a sliding window hides). Either changes the logits, and soon the
    text. Plain attention sums each cell in the same order whatever surrounds the sequence. Used on the model's
    worker thread only."""

    def __init__(
        self,
        weights: LoadedWeights,
        *,
        slots: int,
        context_size: int,
        threads: int,
        batch_threads: int,
    ):
        self.model = weights.load(repack=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * slots
        params.n_batch = params.n_ubatch = STEP_TOKENS
        params.n_seq_max = slots
        params.kv_unified = False
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.swa_full = True  # a cached beginning is saved whole: sliding-window layers must keep every cell
        params.n_threads = threads
        params.n_threads_batch = batch_threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise FailedPreconditionError(
                f"llama.cpp could not create a context for {slots} sequences of {context_size} tokens; lower"
                " parallel or context_size",
                reason="MODEL_LOAD_FAILED",
            )
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)
        self.vocabulary_size = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.cells = int(llama_cpp.llama_n_ctx(self.ctx))
        """KV cells shared by the slots."""
        self.sliding_window = max(int(llama_cpp.llama_model_n_swa(self.model)), 0)
        """Tokens the model's sliding-window layers see (0: it has none)."""

    def memory_bytes(self, saved_cells: int = 0) -> int:
        """Weights plus the KV cache and `saved_cells` cells saved beside it (the prompt cache), the bulk of what the
        model holds (compute buffers are left out)."""
        return int(llama_cpp.llama_model_size(self.model)) + (self.cells + saved_cells) * _cell_bytes(self.model)

    def put(self, token: int, position: int, slot: int, *, logits: bool) -> int:
        """Append one token of sequence `slot` to the batch; its row."""
        batch = self.batch
        row = int(batch.n_tokens)
        batch.token[row] = token
        batch.pos[row] = position
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = slot
        batch.logits[row] = logits
        batch.n_tokens = row + 1
        return row

    def decode(self) -> bool:
        """Decode the batch, and empty it; whether llama.cpp succeeded."""
        status: int = llama_cpp.llama_decode(self.ctx, self.batch)
        self.batch.n_tokens = 0
        return status == 0

    def forget(self, slot: int, start: int = -1) -> None:
        """Drop the KV cells of `slot` from position `start` on (all of them by default)."""
        llama_cpp.llama_memory_seq_rm(self.memory, slot, start, -1)

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def default_context_size(file: ModelFile) -> int:
    """The model's trained context, capped so that the KV cache of large-context models stays small; ValueError for
    a file llama.cpp cannot read."""
    return _file_shape(file).context_size


def embedding_logits_bytes(context_size: int, vocabulary_size: int) -> int:
    """What an embedding context holds beyond its weights once a batch has filled it: every token of an embedding
    context is an output, and llama.cpp computes and keeps each output's logits (a float per vocabulary entry, in
    its compute graph and in its output buffer) whatever the pooling."""
    return LOGIT_COPIES * context_size * vocabulary_size * FLOAT_BYTES


def estimated_memory(file: ModelFile, context_size: int | None, options: LlamaOptions) -> int | None:
    """What the model will say it holds once loaded with `options` (`NativeContext.memory_bytes`, or
    `EmbeddingContext.memory_bytes`), read before loading its weights (the file's size stands for them), so that a
    budget of memory is kept before a load, not only after it. None for a file llama.cpp cannot read, which its load
    would refuse."""
    try:
        shape = _file_shape(file)
    except ValueError as error:
        _log.warning("llama.cpp could not load %s: %s", file.name, error)  # the details a refusal points to
        return None
    context_size = context_size or shape.context_size
    if options.embedding:
        return file.stat().st_size + embedding_logits_bytes(context_size, shape.vocabulary_size)
    saved = options.cached_prompt_tokens(context_size)
    return file.stat().st_size + (context_size * options.parallel + saved) * shape.cell_bytes


class _FileShape(NamedTuple):
    context_size: int
    """The trained context, capped."""
    cell_bytes: int
    vocabulary_size: int


@dataclass(frozen=True)
class _FileVersion:
    """A version of a file, whatever its name: its inode, as it stood."""

    device: int
    inode: int
    mtime_ns: int
    size: int
    path: Path = field(compare=False)
    """Where to read it now (an open ModelFile's path, which names another file once it is closed): no part of
    which version it is."""


def _file_shape(file: ModelFile) -> _FileShape:
    """What a GGUF file's metadata says of its context and KV cells, read once per version of the file: llama.cpp
    reads the whole vocabulary with it (half a second of CPU for Gemma's), and a budget checks a model's estimate
    before each load it refuses."""
    version = file.stat()
    return _read_file_shape(
        _FileVersion(version.st_dev, version.st_ino, version.st_mtime_ns, version.st_size, file.path)
    )


@functools.lru_cache(maxsize=FILE_SHAPES_KEPT)
def _read_file_shape(version: _FileVersion) -> _FileShape:
    vocabulary = llama_cpp.Llama(model_path=str(version.path), vocab_only=True, verbose=False)
    try:
        return _FileShape(_capped_context(vocabulary), _file_cell_bytes(vocabulary.metadata), vocabulary.n_vocab())
    finally:
        vocabulary.close()


def _capped_context(vocabulary: llama_cpp.Llama) -> int:
    trained = int(vocabulary.metadata.get(f"{vocabulary.metadata['general.architecture']}.context_length", 0))
    return min(trained, DEFAULT_CONTEXT_SIZE) if trained > 0 else DEFAULT_CONTEXT_SIZE


def _cell_bytes(model: llama_cpp.llama_model_p) -> int:
    """A KV cell's bytes, by the weights' hyperparameters."""
    architecture = _metadata(model, "general.architecture")
    return _kv_cell_bytes(
        int(llama_cpp.llama_model_n_layer(model)),
        int(llama_cpp.llama_model_n_head(model)),
        int(llama_cpp.llama_model_n_head_kv(model)),
        int(llama_cpp.llama_model_n_embd(model)),
        _metadata(model, f"{architecture}.attention.key_length"),
        _metadata(model, f"{architecture}.attention.value_length"),
    )


def _file_cell_bytes(metadata: dict[str, str]) -> int:
    """A KV cell's bytes, by the file's metadata: a model loaded for its vocabulary only has no hyperparameters
    (0 when the metadata does not say them as plain numbers, as a model with per-layer head counts does)."""
    architecture = metadata.get("general.architecture", "")
    numbers = [metadata.get(f"{architecture}.{key}", "") for key in _SHAPE_KEYS]
    if not all(number.isdigit() for number in numbers):
        return 0
    layers, heads, embedding = (int(number) for number in numbers)
    kv_heads = metadata.get(f"{architecture}.attention.head_count_kv", "")
    return _kv_cell_bytes(
        layers,
        heads,
        int(kv_heads) if kv_heads.isdigit() else heads,
        embedding,
        metadata.get(f"{architecture}.attention.key_length", ""),
        metadata.get(f"{architecture}.attention.value_length", ""),
    )


_SHAPE_KEYS = ("block_count", "attention.head_count", "embedding_length")


def _kv_cell_bytes(layers: int, heads: int, kv_heads: int, embedding: int, key_length: str, value_length: str) -> int:
    """A KV cell holds, per layer, a key and a value per KV head, of the widths the GGUF gives (Gemma's heads are
    wider than the embedding over the head count), else of that."""
    head_width = embedding // max(heads, 1)
    key_width = int(key_length or head_width)
    value_width = int(value_length or head_width)
    return layers * (key_width + value_width) * kv_heads * KV_BYTES_PER_VALUE


def _metadata(model: llama_cpp.llama_model_p, key: str) -> str:
    """A GGUF metadata value as text; "" when the file has none."""
    value = ctypes.create_string_buffer(128)
    written = llama_cpp.llama_model_meta_val_str(model, key.encode(), value, len(value))
    return value.value.decode() if written >= 0 else ""


def return_freed_memory() -> None:
    """Hand back to the system the pages malloc keeps of what a released model freed (glibc's malloc_trim): its
    arenas keep them otherwise, and a server that loads and unloads models grew by tens of MiB each time. A no-op
    with a C library that has no malloc_trim."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
