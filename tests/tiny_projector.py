"""Write a tiny multimodal projector GGUF (llama.cpp's clip loader, projector type "mlp" as in LLaVA) for the tiny
text model, and tiny PNG images to show it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gguf
import numpy as np

from tests.tiny_model import EMBEDDING as TEXT_EMBEDDING
from tests.tiny_model import write_tiny_model

IMAGE_SIZE, PATCH_SIZE = 28, 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # one embedding per patch
# Two blocks: a LLaVA projector reads the second-to-last block's output, so one block runs.
HIDDEN, HEADS, FEED_FORWARD, BLOCKS, PROJECTOR_HIDDEN = 32, 4, 64, 2, 48


def write_tiny_projector(path: Path, seed: int = 11, text_embedding: int = TEXT_EMBEDDING) -> Path:
    """`text_embedding`: the width of the text model it feeds (its projection output)."""
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.5, shape).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", HIDDEN)
    writer.add_uint32("clip.vision.feed_forward_length", FEED_FORWARD)
    writer.add_uint32("clip.vision.block_count", BLOCKS)
    writer.add_uint32("clip.vision.projection_dim", text_embedding)
    writer.add_uint32("clip.vision.attention.head_count", HEADS)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_bool("clip.use_gelu", True)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    # Shapes are numpy's, the reverse of ggml's.
    writer.add_tensor("v.patch_embd.weight", weights(HIDDEN, 3, PATCH_SIZE, PATCH_SIZE))
    writer.add_tensor("v.patch_embd.bias", weights(HIDDEN))
    writer.add_tensor("v.position_embd.weight", weights(IMAGE_TOKENS, HIDDEN))
    for block in range(BLOCKS):
        prefix = f"v.blk.{block}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{prefix}.{name}.weight", weights(HIDDEN, HIDDEN))
            writer.add_tensor(f"{prefix}.{name}.bias", weights(HIDDEN))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"{prefix}.{norm}.weight", np.ones(HIDDEN, dtype=np.float32))
            writer.add_tensor(f"{prefix}.{norm}.bias", np.zeros(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD, HIDDEN))
        writer.add_tensor(f"{prefix}.ffn_up.bias", weights(FEED_FORWARD))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(HIDDEN, FEED_FORWARD))
        writer.add_tensor(f"{prefix}.ffn_down.bias", weights(HIDDEN))
    writer.add_tensor("mm.0.weight", weights(PROJECTOR_HIDDEN, HIDDEN))
    writer.add_tensor("mm.0.bias", weights(PROJECTOR_HIDDEN))
    writer.add_tensor("mm.2.weight", weights(text_embedding, PROJECTOR_HIDDEN))
    writer.add_tensor("mm.2.bias", weights(text_embedding))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_seeing_models(root: Path) -> Path:
    """`root` as a MODELS_PATH holding the tiny model and its projector: hf:warpcore/tiny:tiny.gguf and
    hf:warpcore/tiny:mmproj.gguf."""
    write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    write_tiny_projector(root / "hf" / "warpcore" / "tiny" / "mmproj.gguf")
    return root


def png(seed: int, size: int = IMAGE_SIZE) -> bytes:
    """A `size` x `size` RGB PNG of random pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows = b"".join(b"\x00" + pixels[row].tobytes() for row in range(size))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
