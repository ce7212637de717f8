"""A tiny random-weight vision projector (mmproj GGUF) that llama.cpp's mtmd loads.

It is a Gemma 3 style projector (``clip.projector_type`` "gemma3", the type Ollama's
gemma3 models carry): a one-block SigLIP vision transformer over 64x64 images cut in
4x4 patches (16x16 = 256 patches), average-pooled 4x4 into 4x4 = 16 image tokens,
RMS-normed and projected to the tiny language model's n_embd (tests/tinymodel.py,
64).  Its output is noise; tests use it for plumbing: an image adds IMAGE_TOKENS
positions to a prompt (plus the text mtmd puts around it), and two different images
give two different embeddings.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gguf
import numpy as np

from tinymodel import N_EMBD as TEXT_EMBD

IMAGE_SIZE = 64
PATCH_SIZE = 4
VISION_EMBD = 32
VISION_FF = 64
VISION_HEADS = 2
POOL = 4
#: the image tokens (embeddings) one image becomes: (64 / 4 / 4) ** 2
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE // POOL) ** 2


def write_tiny_projector(path: str | Path, *, seed: int = 0, projection_dim: int = TEXT_EMBD,
                         architecture: str = "clip", image_size: int = IMAGE_SIZE,
                         patch_size: int = PATCH_SIZE) -> Path:
    """Write the tiny gemma3-type projector to ``path`` and return it.

    ``projection_dim`` is the language model's n_embd it projects to (mtmd refuses a
    pair whose sizes differ); ``architecture`` other than "clip" makes a file that is
    a GGUF but no projector (for validation tests).  ``image_size`` / ``patch_size``
    give (image_size / patch_size / 4) ** 2 image tokens (Gemma 3's own: 896 / 14,
    256 tokens)."""
    path = Path(path)
    writer = gguf.GGUFWriter(path, architecture)
    writer.add_string("general.name", "tiny-projector")
    writer.add_uint32("general.file_type", int(gguf.LlamaFileType.ALL_F32))
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch_size)
    writer.add_uint32("clip.vision.embedding_length", VISION_EMBD)
    writer.add_uint32("clip.vision.feed_forward_length", VISION_FF)
    writer.add_uint32("clip.vision.block_count", 1)
    writer.add_uint32("clip.vision.attention.head_count", VISION_HEADS)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_uint32("clip.vision.projection_dim", projection_dim)
    writer.add_uint32("clip.vision.projector.scale_factor", POOL)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    ones = np.ones(VISION_EMBD, dtype=np.float32)
    n_patches = (image_size // patch_size) ** 2
    tensors = {
        # numpy shapes are GGUF's dims reversed: (n_embd, channels, patch, patch)
        "v.patch_embd.weight": weight(VISION_EMBD, 3, patch_size, patch_size),
        "v.patch_embd.bias": bias(VISION_EMBD),
        "v.position_embd.weight": weight(n_patches, VISION_EMBD),
    }
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensors[f"v.blk.0.{name}.weight"] = weight(VISION_EMBD, VISION_EMBD)
        tensors[f"v.blk.0.{name}.bias"] = bias(VISION_EMBD)
    tensors |= {
        "v.blk.0.ln1.weight": ones, "v.blk.0.ln1.bias": bias(VISION_EMBD),
        "v.blk.0.ln2.weight": ones, "v.blk.0.ln2.bias": bias(VISION_EMBD),
        "v.blk.0.ffn_up.weight": weight(VISION_FF, VISION_EMBD),
        "v.blk.0.ffn_up.bias": bias(VISION_FF),
        "v.blk.0.ffn_down.weight": weight(VISION_EMBD, VISION_FF),
        "v.blk.0.ffn_down.bias": bias(VISION_EMBD),
        "v.post_ln.weight": ones, "v.post_ln.bias": bias(VISION_EMBD),
        "mm.soft_emb_norm.weight": ones,
        # ggml dims (text n_embd, vision n_embd): clip.cpp transposes it before use
        "mm.input_projection.weight": weight(VISION_EMBD, projection_dim),
    }
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def png_bytes(seed: int = 0, size: int = IMAGE_SIZE) -> bytes:
    """A ``size`` x ``size`` RGB PNG of random pixels (a different picture per seed)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
