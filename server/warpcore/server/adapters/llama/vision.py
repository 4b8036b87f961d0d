"""Images in prompts, through llama.cpp's multimodal library (libmtmd) and a model's projector file (mmproj): an
image's bytes become embeddings that take their place in the slot's sequence between the prompt's text tokens."""

from __future__ import annotations

import ctypes
import io
import logging
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
from llama_cpp import mtmd_cpp
from PIL import Image, UnidentifiedImageError

from warpcore.server.adapters.llama.image_decoder import image_bitmap
from warpcore.server.adapters.llama.model_paths import MMPROJ_FIELD
from warpcore.server.core.bounds import MAX_LOCAL_IMAGE_PIXELS
from warpcore.server.core.errors import ContentTooLargeError, FailedPreconditionError, InvalidArgumentError

_log = logging.getLogger(__name__)
# Pillow reads only an image's header here, for its size, and MAX_LOCAL_IMAGE_PIXELS bounds that: its own bound on
# images it would decode, a warning then an error past about 89 megapixels, has nothing to guard.
Image.MAX_IMAGE_PIXELS = None
IMAGE_TOKEN = -1  # what stands in a prompt's tokens for each embedding of an image (llama.cpp's LLAMA_TOKEN_NULL)
_PREPROCESSING_FAILED = 2  # mtmd_tokenize: an image could not be preprocessed (1: markers and images differ)


@dataclass(frozen=True)
class PromptImage:
    """An image's bytes, and the request field it came from."""

    field: str
    data: bytes


@dataclass(frozen=True)
class ImageSpan:
    start: int
    """Where its embeddings start among the prompt's tokens."""
    tokens: int
    chunk: int
    """Its mtmd_input_chunk, owned by the ImagePrompt that holds this span."""


class ImagePrompt:
    """The images of one prompt, preprocessed, in prompt order. Their native memory is freed when this object goes
    (whatever thread drops it last: freeing touches neither the projector nor a llama.cpp context)."""

    def __init__(self, projector: Projector, chunks: int, spans: tuple[ImageSpan, ...]) -> None:
        self._projector = projector
        self.spans = spans
        self._starts = {span.start: span for span in spans}
        weakref.finalize(self, mtmd_cpp.mtmd_input_chunks_free, chunks)

    def at(self, position: int) -> ImageSpan | None:
        return self._starts.get(position)

    def text_end(self, position: int, length: int) -> int:
        """Where the text from `position` on stops: at the next image, else at the prompt's end."""
        return min((span.start for span in self.spans if span.start >= position), default=length)

    def decode(self, span: ImageSpan, ctx: llama_cpp.llama_context_p, position: int, sequence: int, batch: int) -> int:
        """Encode the image and decode its embeddings into `sequence` from `position` on, in calls of at most
        `batch` embeddings; the position after it, or -1 when llama.cpp failed. On the model's batching thread."""
        return self._projector.decode(span.chunk, ctx, position, sequence, batch)


class Projector:
    """A model's multimodal projector. Loaded, used and freed on the model's threads: prompts are tokenized on its
    prompt thread while images are encoded on its batching thread (mtmd.h: tokenizing is thread-safe on a shared
    context)."""

    def __init__(self, path: Path, text_model: llama_cpp.llama_model_p, *, threads: int, use_gpu: bool) -> None:
        # A marker no request can forge: only the template's rendering of an image part holds it.
        self.marker = f"<__warpcore_image_{secrets.token_hex(8)}__>"
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = threads
        params.print_timings = False
        params.media_marker = self.marker.encode()  # copied by llama.cpp
        context = mtmd_cpp.mtmd_init_from_file(str(path).encode(), text_model, params)
        if not context:
            raise FailedPreconditionError(
                "llama.cpp could not load the multimodal projector (mmproj) for this model: it must be a projector"
                " GGUF made for this model (details in the server log)",
                reason="MODEL_LOAD_FAILED",
                field=MMPROJ_FIELD,
            )
        self._context = context
        if not mtmd_cpp.mtmd_support_vision(context):
            self.free()
            raise FailedPreconditionError(
                "this multimodal projector (mmproj) reads no images", reason="MODEL_LOAD_FAILED", field=MMPROJ_FIELD
            )

    def tokenize(self, text: bytes, images: Sequence[PromptImage], *, add_bos: bool) -> tuple[list[int], ImagePrompt]:
        """The prompt's tokens, IMAGE_TOKEN for each image embedding, with the marker in `text` standing for each of
        `images` in order."""
        _check_pixels(images)
        bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(images))()
        try:
            for number, image in enumerate(images):
                bitmaps[number] = _bitmap(image)
            chunks = mtmd_cpp.mtmd_input_chunks_init()
            prompt_text = mtmd_cpp.mtmd_input_text(text, len(text), add_bos, True)
            status = mtmd_cpp.mtmd_tokenize(self._context, chunks, ctypes.byref(prompt_text), bitmaps, len(images))
        finally:
            for bitmap in bitmaps:
                if bitmap:
                    mtmd_cpp.mtmd_bitmap_free(bitmap)
        tokens: list[int] = []
        spans: list[ImageSpan] = []
        for index in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, index)
            count = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
            if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                size = ctypes.c_size_t()
                text_tokens = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(size))
                tokens += text_tokens[: size.value] if text_tokens else []
            else:
                spans.append(ImageSpan(len(tokens), count, int(chunk)))
                tokens += [IMAGE_TOKEN] * count
        prompt = ImagePrompt(self, chunks, tuple(spans))
        if status == _PREPROCESSING_FAILED:
            raise InvalidArgumentError(
                "llama.cpp could not prepare these images for the model's projector (details in the server log)",
                field="messages",
                reason="IMAGE_UNREADABLE",
            )
        if status != 0 or len(spans) != len(images):
            raise InvalidArgumentError(
                "the model's chat template did not keep each image in its place in the prompt, so the images cannot"
                " be read; send them in user turns, or load the model with another chat_format",
                field="messages",
                reason="CHAT_TEMPLATE_REJECTED",
            )
        if tokens and tokens[-1] == IMAGE_TOKEN:
            raise InvalidArgumentError(
                "the model's chat template ends the prompt with an image, so the model has nowhere to answer from",
                field="messages",
                reason="CHAT_TEMPLATE_REJECTED",
            )
        return tokens, prompt

    def decode(self, chunk: int, ctx: llama_cpp.llama_context_p, position: int, sequence: int, batch: int) -> int:
        if mtmd_cpp.mtmd_encode_chunk(self._context, chunk) != 0:
            _log.error("the multimodal projector could not encode an image")
            return -1
        embeddings = mtmd_cpp.mtmd_get_output_embd(self._context)
        after = llama_cpp.llama_pos(0)
        status = mtmd_cpp.mtmd_helper_decode_image_chunk(
            self._context,
            ctx,
            chunk,
            embeddings,
            position,
            sequence,
            batch,
            ctypes.byref(after),
            mtmd_cpp.mtmd_helper_post_decode_callback(),
            None,
        )
        return int(after.value) if status == 0 else -1

    def free(self) -> None:
        mtmd_cpp.mtmd_free(self._context)


def _bitmap(image: PromptImage) -> int:
    bitmap = image_bitmap(image.data)
    if not bitmap:
        raise InvalidArgumentError(
            f"{image.field} could not be decoded as an image (llama.cpp reads JPEG, PNG and GIF)",
            field=image.field,
            reason="IMAGE_UNREADABLE",
        )
    return bitmap


def _check_pixels(images: Sequence[PromptImage]) -> None:
    """Refuse, by their headers alone, images that would decode to more than MAX_LOCAL_IMAGE_PIXELS in all: llama.cpp
    decodes each whole, and a file a few hundred kilobytes long may hold a picture of gigabytes."""
    total = 0
    for image in images:
        try:
            with Image.open(io.BytesIO(image.data)) as opened:
                width, height = opened.size
        except (UnidentifiedImageError, OSError, ValueError):
            continue  # a header Pillow cannot read: llama.cpp's decoder says whether it reads the image
        total += width * height
        if total > MAX_LOCAL_IMAGE_PIXELS:
            raise ContentTooLargeError(
                f"{image.field}: the image is {width}x{height} pixels, and the images of one request may hold"
                f" {MAX_LOCAL_IMAGE_PIXELS // 1_000_000} megapixels in all on a local model, which decodes each whole:"
                " send them scaled down",
                field=image.field,
                reason="IMAGE_TOO_LARGE",
            )
