"""Importance matrices for the tiny model, in both of llama-imatrix's file formats."""

import struct
from pathlib import Path

import gguf
import numpy as np

from tinymodel import N_EMBD, N_FF, N_LAYER


def _matrices() -> dict[str, int]:
    """Each quantized weight of the tiny model and the length of its rows."""
    names = {"attn_q": N_EMBD, "attn_k": N_EMBD, "attn_v": N_EMBD,
             "attn_output": N_EMBD, "ffn_gate": N_EMBD, "ffn_up": N_EMBD, "ffn_down": N_FF}
    return {f"blk.{i}.{n}.weight": cols for i in range(N_LAYER) for n, cols in names.items()}


def importance(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: (rng.random(c) ** 4 * 100).astype(np.float32) for n, c in _matrices().items()}


def write_gguf_imatrix(path: Path, values: dict[str, np.ndarray], calls: int = 10) -> Path:
    """llama-imatrix's GGUF layout: sums of squared activations and how many were summed."""
    writer = gguf.GGUFWriter(path, "imatrix")
    writer.add_string("general.type", "imatrix")
    for name, v in values.items():
        writer.add_tensor(f"{name}.in_sum2", (v * calls).reshape(1, -1).astype(np.float32))
        writer.add_tensor(f"{name}.counts", np.array([[float(calls)]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_legacy_imatrix(path: Path, values: dict[str, np.ndarray], calls: int = 10) -> Path:
    data = struct.pack("<i", len(values))
    for name, v in values.items():
        data += struct.pack("<i", len(name)) + name.encode()
        data += struct.pack("<ii", calls, len(v)) + (v * calls).astype("<f4").tobytes()
    path.write_bytes(data)
    return path
