"""A local model's images are decoded by the image decoder inside llama.cpp's multimodal library, called without
llama.cpp's helper for bytes (which gives bytes that decoder does not read to an ffprobe process): the pixels are the
helper's own, byte for byte, for each kind of JPEG, PNG and GIF, so a projector sees the same image. What is refused,
and that nothing else reads it: test_local_image_refusals.py."""

from __future__ import annotations

import ctypes
import io

import numpy as np
import pytest
from llama_cpp import mtmd_cpp
from PIL import Image

from warpcore.server.adapters.llama.image_decoder import image_bitmap

PICTURE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8))
SIXTEEN_BITS = Image.fromarray(np.random.default_rng(4).integers(0, 65536, (20, 30), dtype=np.uint16))
KINDS: dict[str, tuple[Image.Image, str, dict[str, object]]] = {
    "jpeg": (PICTURE, "JPEG", {"quality": 80}),
    "jpeg progressive": (PICTURE, "JPEG", {"progressive": True}),
    "jpeg 4:4:4": (PICTURE, "JPEG", {"subsampling": 0}),
    "jpeg gray": (PICTURE.convert("L"), "JPEG", {}),
    "jpeg cmyk": (PICTURE.convert("CMYK"), "JPEG", {}),
    "png": (PICTURE, "PNG", {}),
    "png with alpha": (PICTURE.convert("RGBA"), "PNG", {}),
    "png gray with alpha": (PICTURE.convert("LA"), "PNG", {}),
    "png palette, a transparent color": (PICTURE.convert("P"), "PNG", {"transparency": 3}),
    "png 16-bit gray": (SIXTEEN_BITS, "PNG", {}),
    "png 1-bit": (PICTURE.convert("1"), "PNG", {}),
    "gif": (PICTURE.convert("P"), "GIF", {}),
    "gif animated": (
        PICTURE.convert("P"),
        "GIF",
        {"save_all": True, "append_images": [PICTURE.rotate(90).convert("P")], "transparency": 0},
    ),
}


def pixels(bitmap: int) -> tuple[int, int, bytes]:
    data = ctypes.string_at(mtmd_cpp.mtmd_bitmap_get_data(bitmap), mtmd_cpp.mtmd_bitmap_get_n_bytes(bitmap))
    return mtmd_cpp.mtmd_bitmap_get_nx(bitmap), mtmd_cpp.mtmd_bitmap_get_ny(bitmap), data


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_image_decodes_to_the_pixels_llama_cpps_helper_gives(kind: str) -> None:
    picture, image_format, options = KINDS[kind]
    out = io.BytesIO()
    picture.save(out, image_format, **options)
    data = out.getvalue()
    ours = image_bitmap(data)
    assert ours  # so the helper below decodes an image, and starts no ffprobe
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    # The helper reads its context only for audio and video: none is given.
    helpers = mtmd_cpp.mtmd_helper_bitmap_init_from_buf(mtmd_cpp.mtmd_context_p(0), buffer, len(data), False)
    try:
        assert helpers
        assert pixels(ours) == pixels(helpers)
        assert pixels(ours)[:2] == picture.size
    finally:
        mtmd_cpp.mtmd_bitmap_free(ours)
        if helpers:
            mtmd_cpp.mtmd_bitmap_free(helpers)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"ID3\x04" + bytes(16)])
def test_bytes_it_does_not_read_are_none(data: bytes) -> None:
    assert image_bitmap(data) is None
