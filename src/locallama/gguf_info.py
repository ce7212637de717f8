"""Read and validate a GGUF model file before llama.cpp sees it; estimate its memory.

Model files come from strangers, and llama.cpp reports a bad one with a bare
"failed to load model" (or worse), so every file is checked here first and each
problem becomes one :class:`BadModelFile` line naming the file.

The header is walked with :mod:`struct` rather than ``gguf.GGUFReader``: the reader
builds a numpy view per array element (about 20 s for Gemma 3's 262k-token
vocabulary) and maps tensor data in a way that fails oddly on short files.  Here
arrays we do not need are skipped, the file is read only as far as the header
goes, and every offset is checked against the file size.  The ``gguf`` package
still supplies the format's vocabulary: value types, tensor type sizes, file
types and the known architectures.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import gguf

from locallama.errors import BadModelFile
from locallama.gguf_check import HeaderProblem, block_indices, check_alignment, check_metadata

SUPPORTED_VERSIONS = (2, 3)
_MAX_DIMS = 4  # GGML_MAX_DIMS
_KEEP_NUMBERS = 4096  # numeric arrays up to this length are decoded (per-layer values)
_MAX_NESTING = 8
_MAX_HEADER = 1 << 30  # real headers are a few MB; a larger one is corruption, not a model
_CHUNK = 1 << 20

_VT = gguf.GGUFValueType
_SCALARS: dict[int, struct.Struct] = {
    t: struct.Struct("<" + c) for t, c in zip(
        (_VT.UINT8, _VT.INT8, _VT.UINT16, _VT.INT16, _VT.UINT32, _VT.INT32, _VT.FLOAT32,
         _VT.UINT64, _VT.INT64, _VT.FLOAT64, _VT.BOOL), "BbHhIifQqd?", strict=True)
}
_U32 = _SCALARS[_VT.UINT32]
_U64 = _SCALARS[_VT.UINT64]
_KNOWN_ARCHS = frozenset(gguf.MODEL_ARCH_NAMES.values())


@dataclass(frozen=True)
class GGUFInfo:
    """What a model file says about itself; enough for ``show`` and for loading."""

    path: Path
    file_size: int
    architecture: str
    name: str | None
    parameter_count: int  # sum of tensor element counts
    file_type: str  # quantization label: "Q4_K_M", "F32", "Q8_0"
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None  # the largest, where layers differ
    key_length: int | None  # per-head dimensions
    value_length: int | None
    chat_template: str | None
    tensor_bytes: int
    metadata: dict[str, Any]  # scalars and strings; arrays as "[N items]"
    vocab_size: int | None = None
    head_count_kv_per_layer: tuple[int, ...] | None = None  # archs that vary it by layer
    tensor_types: frozenset[str] = frozenset()  # ggml types of its weight matrices ("Q4_K")

    @property
    def is_reranker(self) -> bool:
        """Whether the file asks for llama.cpp's rank pooling (``{arch}.pooling_type`` 4,
        LLAMA_POOLING_TYPE_RANK): a cross-encoder that scores (query, document) pairs."""
        return self.metadata.get(f"{self.architecture}.pooling_type") == 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs, in the parts the scheduler budgets for."""

    weights: int
    kv_cache: int
    compute: int
    total: int


@dataclass(frozen=True)
class _Array:
    count: int
    values: tuple[Any, ...] | None  # None where the array was skipped


class _Problem(HeaderProblem):
    """Internal: a validation failure, turned into BadModelFile with the path."""


def _truncated(what: str) -> _Problem:
    return _Problem(f"file is truncated or corrupt ({what} runs past the end of the file)")


class _Header:
    """Reads a GGUF header front to back, pulling in file bytes only as needed."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size, self.pos = f, size, 0
        self.buf = bytearray()

    def _fill(self, end: int, what: str) -> None:
        if end > self.size:
            raise _truncated(what)
        if end > _MAX_HEADER:
            raise _Problem(f"metadata is over {_MAX_HEADER >> 20} MiB at '{what}': corrupt file")
        want = min(self.size, max(end, len(self.buf) + _CHUNK, 2 * len(self.buf)))
        self.buf += self.f.read(want - len(self.buf))
        if len(self.buf) < end:
            raise _truncated(what)

    def take(self, n: int, what: str) -> int:
        start, end = self.pos, self.pos + n
        if end > len(self.buf):
            self._fill(end, what)
        self.pos = end
        return start

    def scalar(self, st: struct.Struct, what: str) -> Any:
        return st.unpack_from(self.buf, self.take(st.size, what))[0]

    def string(self, what: str) -> str:
        n = self.scalar(_U64, what)
        start = self.take(n, what)
        return self.buf[start:start + n].decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0, keep: bool = False) -> Any:
        """One metadata value; ``keep`` keeps a string array's items as raw bytes."""
        st = _SCALARS.get(vtype)
        if st is not None:
            return self.scalar(st, what)
        if vtype == _VT.STRING:
            return self.string(what)
        if vtype != _VT.ARRAY:
            raise _Problem(f"metadata '{what}' has unknown value type {vtype}")
        if depth >= _MAX_NESTING:
            raise _Problem(f"metadata '{what}' nests arrays too deeply")
        item_type = self.scalar(_U32, what)
        count = self.scalar(_U64, what)
        st = _SCALARS.get(item_type)
        if st is not None:
            start = self.take(count * st.size, what)
            if count > _KEEP_NUMBERS:
                return _Array(count, None)
            return _Array(count, struct.unpack_from(f"<{count}{st.format[-1]}", self.buf, start))
        if item_type not in (_VT.STRING, _VT.ARRAY):
            raise _Problem(f"metadata '{what}' has unknown array item type {item_type}")
        if count * 8 > self.size - self.pos:  # every item takes at least 8 bytes
            raise _truncated(what)
        if item_type == _VT.STRING and keep and depth == 0:
            return _Array(count, self._keep_strings(count, what))
        if item_type == _VT.STRING:
            self._skip_strings(count, what)
        else:
            for _ in range(count):
                self.value(item_type, what, depth + 1)
        return _Array(count, None)

    def _skip_strings(self, count: int, what: str) -> None:
        """Step over a string array (a vocabulary: 262k items) without decoding it."""
        buf, pos, unpack = self.buf, self.pos, _U64.unpack_from
        limit = len(buf) - 8  # the hot loop of the whole module: keep it minimal
        for _ in range(count):
            if pos > limit:
                self._fill(pos + 8, what)
                limit = len(buf) - 8
            pos += 8 + unpack(buf, pos)[0]
        self.pos = pos
        if pos > len(self.buf):
            self._fill(pos, what)


    def _keep_strings(self, count: int, what: str) -> tuple[bytes, ...]:
        """Read a string array's items as raw bytes (the vocabulary, checked for repeats)."""
        first = pos = self.pos
        buf, unpack = self.buf, _U64.unpack_from
        spans = []
        limit = len(buf) - 8
        for _ in range(count):  # as _skip_strings, remembering where each item lies
            if pos > limit:
                self._fill(pos + 8, what)
                limit = len(buf) - 8
            end = pos + 8 + unpack(buf, pos)[0]
            spans.append((pos + 8 - first, end - first))
            pos = end
        self.pos = pos
        if pos > len(buf):
            self._fill(pos, what)
        data = bytes(buf[first:pos])  # one copy; slices of bytes are bytes
        return tuple([data[a:b] for a, b in spans])


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read and validate the header of a GGUF file; raise BadModelFile on any problem."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise _Problem("not a regular file")
        if st.st_size == 0:
            raise _Problem("empty file, not a GGUF model")
        with open(p, "rb") as f:
            return _parse(p, _Header(f, st.st_size))
    except HeaderProblem as e:  # names inside come from the file: keep the message one short line
        why = "".join(c if c.isprintable() else "?" for c in str(e))
        raise BadModelFile(f"{p}: {why if len(why) <= 200 else why[:199] + '…'}") from None
    except FileNotFoundError:
        raise BadModelFile(f"{p}: no such file") from None
    except (OSError, ValueError, OverflowError, MemoryError, struct.error) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise BadModelFile(f"{p}: cannot read model file: {why}") from None


def _parse(path: Path, h: _Header) -> GGUFInfo:
    if h.size < 4 or h.buf[h.take(4, "magic"):4] != b"GGUF":
        raise _Problem("not a GGUF file")
    version = h.scalar(_U32, "header")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise _Problem("big-endian GGUF file, which this machine cannot load")
        raise _Problem(f"unsupported GGUF version {version} (supported: 2 and 3)")
    n_tensors = h.scalar(_U64, "header")
    n_kv = h.scalar(_U64, "header")
    if n_kv * 13 > h.size or n_tensors * 28 > h.size:  # smallest possible entries
        raise _Problem("file is truncated or corrupt (header counts exceed the file size)")

    fields: dict[str, Any] = {}
    for i in range(n_kv):
        key = h.string(f"metadata key #{i}")
        if key in fields:
            raise _Problem(f"duplicate metadata key '{key}'")
        fields[key] = h.value(h.scalar(_U32, key), key, keep=key == gguf.Keys.Tokenizer.LIST)

    alignment = check_alignment(fields.get(gguf.Keys.General.ALIGNMENT,
                                           gguf.GGUF_DEFAULT_ALIGNMENT))
    parameter_count, tensor_bytes, by_type, names = _read_tensors(h, n_tensors, alignment)

    arch = fields.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise _Problem("no general.architecture in the metadata")
    if arch not in _KNOWN_ARCHS:
        raise _Problem(f"unknown model architecture '{arch}'")
    check_metadata(fields, arch, block_indices(names))

    def hp(key: str) -> Any:
        return fields.get(key.format(arch=arch))

    keys, attn = gguf.Keys.LLM, gguf.Keys.Attention
    embedding = _int(hp(keys.EMBEDDING_LENGTH))
    heads = _int(hp(attn.HEAD_COUNT))
    kv_raw = hp(attn.HEAD_COUNT_KV)
    head_dim = embedding // heads if embedding and heads else None
    tokens = fields.get(gguf.Keys.Tokenizer.LIST)
    vocab = tokens.count if isinstance(tokens, _Array) else _int(hp(keys.VOCAB_SIZE))
    name_value = fields.get(gguf.Keys.General.NAME)
    template = fields.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    return GGUFInfo(
        path=path,
        file_size=h.size,
        architecture=arch,
        name=name_value if isinstance(name_value, str) else None,
        parameter_count=parameter_count,
        file_type=_file_type(fields.get(gguf.Keys.General.FILE_TYPE), by_type),
        context_length=_int(hp(keys.CONTEXT_LENGTH)),
        embedding_length=embedding,
        block_count=_int(hp(keys.BLOCK_COUNT)),
        head_count=heads,
        head_count_kv=_int(kv_raw) if kv_raw is not None else heads,
        key_length=_int(hp(attn.KEY_LENGTH)) or head_dim,
        value_length=_int(hp(attn.VALUE_LENGTH)) or head_dim,
        chat_template=template if isinstance(template, str) else None,
        tensor_bytes=tensor_bytes,
        metadata={k: f"[{v.count} items]" if isinstance(v, _Array) else v
                  for k, v in fields.items()},
        vocab_size=vocab,
        head_count_kv_per_layer=_ints(kv_raw) if isinstance(kv_raw, _Array) else None,
        tensor_types=frozenset(t.name for t in by_type),
    )


def _read_tensors(h: _Header, count: int,
                  alignment: int) -> tuple[int, int, dict[Any, int], set[str]]:
    """Check every tensor's data lies in the file, packed in order as llama.cpp reads it
    (each tensor starts where the one before ends, padded to ``alignment``).

    Returns (parameters, data bytes, elements per tensor type, tensor names).
    """
    tensors = []
    names: set[str] = set()
    for i in range(count):
        name = h.string(f"tensor info #{i}")
        n_dims = h.scalar(_U32, name)
        if n_dims > _MAX_DIMS:
            raise _Problem(f"tensor '{name}' has {n_dims} dimensions (at most {_MAX_DIMS})")
        dims = struct.unpack_from(f"<{n_dims}Q", h.buf, h.take(8 * n_dims, name))
        raw_type, offset = h.scalar(_U32, name), h.scalar(_U64, name)
        try:
            ttype = gguf.GGMLQuantizationType(raw_type)
        except ValueError:
            raise _Problem(f"tensor '{name}' has unknown type {raw_type}") from None
        if name in names:
            raise _Problem(f"duplicate tensor '{name}'")
        names.add(name)
        tensors.append((name, dims, ttype, offset))

    data_start = -(-h.pos // alignment) * alignment
    parameter_count = tensor_bytes = 0
    by_type: dict[Any, int] = {}
    previous, expected = None, 0  # llama.cpp's gguf.cpp wants the data packed in order
    for name, dims, ttype, offset in tensors:
        block, type_size = gguf.GGML_QUANT_SIZES[ttype]
        n_elements = 1
        for d in dims:
            n_elements *= d
        if dims and dims[0] % block:
            raise _Problem(f"tensor '{name}' row size {dims[0]} is not a multiple of {block}")
        n_bytes = n_elements // block * type_size
        if offset % alignment:
            raise _Problem(f"tensor '{name}' data is not aligned to {alignment} bytes")
        end = data_start + offset + n_bytes
        if end > h.size:
            raise _Problem(f"tensor '{name}' data ends at byte {end}, past the end of the "
                           f"file ({h.size} bytes): the file is truncated or corrupt")
        if offset != expected:
            before = f"'{previous}' before it ends" if previous else "the data section starts"
            raise _Problem(f"tensor '{name}' data starts at byte {offset} of the data "
                           f"section, but {before} at byte {expected}: the tensor table "
                           "is corrupt")
        previous, expected = name, expected + -(-n_bytes // alignment) * alignment
        parameter_count += n_elements
        tensor_bytes += n_bytes
        if len(dims) >= 2:  # weights, not norms and biases
            by_type[ttype] = by_type.get(ttype, 0) + n_elements
    return parameter_count, tensor_bytes, by_type, names


def _ints(value: Any) -> tuple[int, ...] | None:
    """An integer hyperparameter as a tuple: one value, or one per layer."""
    if type(value) is int:
        return (value,)
    if isinstance(value, _Array) and value.values and all(type(v) is int for v in value.values):
        return value.values
    return None


def _int(value: Any) -> int | None:
    """An integer hyperparameter; for a per-layer array, its largest value."""
    values = _ints(value)
    return max(values) if values else None


def _file_type(raw: Any, by_type: dict[Any, int]) -> str:
    """general.file_type as Ollama spells it, else the type most weights are stored in."""
    try:
        label = gguf.LlamaFileType(raw).name if type(raw) is int else "GUESSED"
    except ValueError:  # a file type newer than the gguf package
        label = "GUESSED"
    if label != "GUESSED":
        return label.removeprefix("MOSTLY_").removeprefix("ALL_")
    return max(by_type, key=by_type.__getitem__).name if by_type else "unknown"


def estimate_memory(info: GGUFInfo, num_ctx: int, num_parallel: int = 1,
                    kv_bytes_per_element: float = 2.0) -> MemoryEstimate:
    """Estimate the bytes a model needs at a context size; an upper bound, not a promise.

    - weights = tensor_bytes (llama.cpp maps or copies the tensors as stored).
    - kv_cache = n_tokens x sum over layers of head_count_kv[l] x (key_length +
      value_length) x kv_bytes_per_element, where n_tokens = num_ctx x num_parallel
      (every parallel slot gets the full context).  With equal key and value
      lengths this is the usual 2 x layers x n_tokens x kv_heads x head_dim x bytes.
      Sliding-window layers are counted at full context; recurrent state is ignored.
    - compute = f32 scratch for one micro-batch of u = min(512, n_tokens) tokens
      (llama-cpp-python's n_ubatch, flash attention off): 4 x u x (max(vocab_size,
      n_tokens x (head_count + 1)) + 4 x embedding_length).  The logits and the
      attention scores + mask share memory, so the larger wins; a few
      embedding-wide activations come on top.  This matches llama.cpp's reported
      CPU compute buffer within 1-2% for Gemma 3 270M and the tiny test model.
    """
    if num_ctx < 1 or num_parallel < 1:
        raise ValueError("num_ctx and num_parallel must be at least 1")
    n_tokens = num_ctx * num_parallel
    layers = info.block_count or 0
    per_layer = info.head_count_kv_per_layer
    if per_layer and len(per_layer) == layers:
        kv_heads = sum(per_layer)
    else:  # a product, never a per-layer tuple: a corrupt block count stays arithmetic
        kv_heads = (info.head_count_kv or info.head_count or 0) * layers
    dims = (info.key_length or 0) + (info.value_length or 0)
    kv_cache = int(n_tokens * kv_heads * dims * kv_bytes_per_element)
    attention = n_tokens * ((info.head_count or 0) + 1)
    compute = 4 * min(512, n_tokens) * (max(info.vocab_size or 0, attention)
                                        + 4 * (info.embedding_length or 0))
    weights = info.tensor_bytes
    return MemoryEstimate(weights, kv_cache, compute, weights + kv_cache + compute)
