"""Quantize a GGUF file with llama.cpp's own quantizer (``llama_model_quantize``).

The quantizer is one blocking C call.  It runs in a child process of its own
(``python -m locallama.engine.quantize``, like a model's runner: llama.cpp may
``abort()`` on a file, and then only the child dies) while this process watches the
output file grow: llama.cpp writes the header first and then each tensor as soon
as it is quantized, so the bytes on disk against the expected size are an honest
progress measure.  A client that goes away (``progress`` raises) kills the child.

An importance matrix (``llama-imatrix`` output, GGUF or the older binary
format) is read here and handed over as llama.cpp's null-terminated array of
``llama_model_imatrix_data``; the values are the per-column mean squared
activations, as llama.cpp's quantize tool computes them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import gguf
import llama_cpp
import numpy as np

import locallama.engine.model  # noqa: F401  (silences llama.cpp's log, initialises the backend)
from locallama.children import run_watched
from locallama.errors import BadModelFile, InvalidRequest
from locallama.gguf_info import GGUFInfo
from locallama.progress import Progress, ProgressEvent, silent

#: source types that are not themselves quantized: quantizing from them loses nothing twice
UNQUANTIZED = frozenset({"F32", "F16", "BF16"})
#: types llama.cpp refuses to make without an importance matrix (too lossy otherwise)
NEEDS_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K_S"})
#: nominal ggml type behind each file type, for the expected output size
_BASE = {"Q2_K_S": "Q2_K", "IQ3_M": "IQ3_S", "IQ2_M": "IQ2_S", "IQ3_XS": "IQ3_S",
         "MXFP4_MOE": "MXFP4"}


def quant_types() -> dict[str, int]:
    """Every file type this build of llama.cpp can write, by its usual name."""
    types = {}
    for attr in dir(llama_cpp):
        if attr.startswith("LLAMA_FTYPE_") and attr != "LLAMA_FTYPE_GUESSED":
            name = attr.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
            types[name] = int(getattr(llama_cpp, attr))
    return dict(sorted(types.items(), key=lambda kv: kv[1]))


def parse_quant_type(text: str) -> str:
    """``q4_k_m`` -> ``Q4_K_M``; anything llama.cpp does not offer is a clear error."""
    name = text.strip().upper().replace("-", "_")
    types = quant_types()
    if name not in types:
        raise InvalidRequest(f"unknown quantization type '{text}'; choose one of "
                             + ", ".join(types))
    return name


def expected_size(info: GGUFInfo, qtype: str) -> int:
    """About how large the output will be: every tensor at the type's nominal bits."""
    base = _BASE.get(qtype, qtype)
    for candidate in (base, base.rsplit("_", 1)[0]):
        try:
            block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[candidate]]
            return int(info.parameter_count * size / block) + (info.file_size - info.tensor_bytes)
        except KeyError:
            continue
    return info.file_size // 2


def quantize_file(source: Path, target: Path, info: GGUFInfo, qtype: str,
                  imatrix: Path | None = None, threads: int = 0,
                  progress: Progress | None = None) -> None:
    """Write ``source`` quantized to ``qtype`` at ``target``; raise on failure.

    BadModelFile when llama.cpp fails, OSError(ENOSPC) when it failed because the
    device is full (``target`` removed in both cases).

    ``info`` is the source's header (already validated).  A quantized source is
    requantized (llama.cpp's ``allow_requantize``); the caller warns about it.
    """
    report = progress or silent
    qtype = parse_quant_type(qtype)
    if qtype in NEEDS_IMATRIX and imatrix is None:
        raise InvalidRequest(f"{qtype} needs an importance matrix (--imatrix FILE, made by "
                             "llama-imatrix); without one the model loses too much")
    if imatrix is not None:  # read here, so a bad file is refused before any work
        entries = read_imatrix(imatrix)
        report(ProgressEvent(f"using an importance matrix for {len(entries)} tensors"))
    total = expected_size(info, qtype)
    status = f"quantizing {info.file_type} to {qtype}"
    argv = [sys.executable, "-m", "locallama.engine.quantize", str(source), str(target),
            str(quant_types()[qtype]), "1" if info.file_type not in UNQUANTIZED else "0",
            str(threads), str(imatrix or "")]
    report(ProgressEvent(status, None, total, 0))
    with tempfile.TemporaryFile() as log:
        code = _run_child(argv, log, lambda done: report(
            ProgressEvent(status, None, total, min(done, total - 1))), target)
        log.seek(0)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    if code != 0:
        _raise_if_full(target, total)
        target.unlink(missing_ok=True)
        if code < 0:
            raise BadModelFile(f"llama.cpp could not quantize {source.name} to {qtype}: it "
                               f"stopped with {_signal_name(-code)}{_last_error(lines)}")
        raise BadModelFile(f"llama.cpp could not quantize {source.name} to {qtype}"
                           f"{_last_error(lines) or ' (set LOCALLAMA_DEBUG=1 to see its log)'}")
    report(ProgressEvent(status, None, total, total))


def _run_child(argv: list[str], log: IO[bytes], watch: Callable[[int], None],
               target: Path) -> int:
    """Run the quantizer child with its output in ``log``; ``watch`` gets the output
    file's size in bytes every quarter second.  Its return code (negative: the signal
    that ended it).  When ``watch`` raises (the client went away), the child is killed
    and the partial output removed before the error goes on."""
    package = str(Path(__file__).resolve().parents[2])  # the locallama this process runs
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
    env.setdefault("GGML_NO_BACKTRACE", "1")
    return run_watched(argv, log, watch, target, env)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_error(lines: list[str]) -> str:
    """": <why>" from llama.cpp's output: its last line that reads like an error."""
    for line in reversed(lines):
        if any(word in line.lower() for word in ("error", "failed", "assert", "abort")):
            return f": {line.strip()[:300]}"
    return ""


def _raise_if_full(target: Path, total: int) -> None:
    """llama.cpp reports only that it failed: when the device has no room left for the
    rest of the expected output, remove the partial output and raise OSError(ENOSPC),
    which the store turns into StorageFull."""
    try:
        done = target.stat().st_size
        free = shutil.disk_usage(target.parent).free
    except OSError:
        return
    if free < max(total - done, 1 << 20):
        target.unlink(missing_ok=True)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> importance per column, from a GGUF or a legacy ``.dat`` imatrix."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InvalidRequest(f"cannot read the importance matrix {path}: {exc}") from None
    try:
        entries = _read_gguf_imatrix(path) if magic == b"GGUF" else _read_legacy_imatrix(path)
    except (ValueError, KeyError, struct.error, IndexError) as exc:
        raise BadModelFile(f"{path.name} is not an importance matrix: {exc}") from None
    if not entries:
        raise BadModelFile(f"{path.name} holds no importance data")
    for name, values in entries.items():
        if not np.all(np.isfinite(values)):
            raise BadModelFile(f"{path.name}: the entry for {name} holds NaN or infinity")
    return entries


def _read_gguf_imatrix(path: Path) -> dict[str, np.ndarray]:
    """``<tensor>.in_sum2`` (sums of squared activations, one row per expert) divided
    by ``<tensor>.counts`` (how many activations each row summed)."""
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    entries = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = np.asarray(tensors[base + ".counts"].data, dtype=np.float64).reshape(-1)
        rows = np.asarray(sums.data, dtype=np.float64).reshape(len(counts), -1)
        scale = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 1.0)
        entries[base] = (rows * scale[:, None]).astype(np.float32).reshape(-1)
    return entries


def _read_legacy_imatrix(path: Path) -> dict[str, np.ndarray]:
    """llama-imatrix's original format: count, then per entry its name, the number of
    calls and the values; the values are sums over calls, so they are divided."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    (count,) = take("<i")
    if not 0 < count < 1_000_000:
        raise ValueError(f"{count} entries")
    entries = {}
    for _ in range(count):
        (length,) = take("<i")
        if not 0 < length < 4096:
            raise ValueError("bad entry name")
        name = data[pos:pos + length].decode()
        pos += length
        ncall, nval = take("<ii")
        if nval < 1 or pos + 4 * nval > len(data):
            raise ValueError(f"truncated entry {name}")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = values / ncall if ncall > 0 else values
    return entries


def _imatrix_array(entries: dict[str, np.ndarray]):
    """The C array llama.cpp reads (ending in a NULL name) and what keeps it alive."""
    array = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    keep = []
    for i, (name, values) in enumerate(entries.items()):
        values = np.ascontiguousarray(values, dtype=np.float32)
        encoded = name.encode()
        keep += [values, encoded]
        array[i].name = encoded
        array[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array[i].size = len(values)
    keep.append(array)
    return keep, ctypes.cast(array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))



def _main(argv: list[str]) -> int:
    """The child: ``SOURCE TARGET FTYPE ALLOW_REQUANTIZE THREADS IMATRIX`` (IMATRIX may
    be ""); llama_model_quantize's return code, llama.cpp's log on stderr."""
    source, target, ftype, allow, threads, imatrix = argv
    if os.environ.get("LOCALLAMA_DEBUG") is None:
        @llama_cpp.llama_log_callback
        def log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR: what says why it failed
                sys.stderr.write(text.decode("utf-8", errors="replace"))

        llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = int(threads)
    params.allow_requantize = allow == "1"
    keep = None
    if imatrix:
        keep, params.imatrix = _imatrix_array(read_imatrix(Path(imatrix)))
    code = llama_cpp.llama_model_quantize(source.encode(), target.encode(),
                                          ctypes.byref(params))
    del keep  # the imatrix buffers had to live until the call returned
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
