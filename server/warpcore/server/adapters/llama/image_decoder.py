"""An image's bytes to the RGB pixels a projector reads, by stb_image, the image decoder built into llama.cpp's
multimodal library. llama.cpp's own helper for bytes (mtmd_helper_bitmap_init_from_buf) decodes images with it the
same way, but first tries bytes that look like audio (WAV, MP3, FLAC) with miniaudio, and tries bytes stb_image does
not read as a video, by starting an ffprobe, then an ffmpeg, found on PATH and feeding them the bytes: so a client's
bytes go to stb_image alone here, and no process is started for them."""

from __future__ import annotations

import ctypes

from llama_cpp import mtmd_cpp

_RGB = 3  # channels asked of stb_image, as llama.cpp's helper asks: it drops alpha and repeats gray
_pixels = ctypes.POINTER(ctypes.c_uint8)
_int = ctypes.POINTER(ctypes.c_int)
# The library llama_cpp already loaded (libmtmd exports stb_image's functions); its handle is llama_cpp's own.
_load = mtmd_cpp._libmtmd.stbi_load_from_memory
_load.argtypes = [ctypes.c_char_p, ctypes.c_int, _int, _int, _int, ctypes.c_int]
_load.restype = _pixels
_free = mtmd_cpp._libmtmd.stbi_image_free
_free.argtypes = [ctypes.c_void_p]
_free.restype = None


def image_bitmap(data: bytes) -> int | None:
    """A new mtmd_bitmap of the picture in `data` (its first frame for a GIF), the caller's to free; None when
    stb_image reads none. `data` is at most MAX_IMAGE_BYTES long, well within stb_image's int length."""
    width, height, channels = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    pixels = _load(data, len(data), ctypes.byref(width), ctypes.byref(height), ctypes.byref(channels), _RGB)
    if not pixels:
        return None
    try:
        bitmap: int | None = mtmd_cpp.mtmd_bitmap_init(width.value, height.value, pixels)  # copies the pixels
    finally:
        _free(pixels)
    return bitmap
