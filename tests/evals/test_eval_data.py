"""Data: Parquet and JSON Lines in the datasets' layouts, the errors bad files get,
and fetching from a Hugging Face endpoint (a local fake: tests never use the network)."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from locallama.errors import InvalidRequest, PullError
from locallama.evals import data, harness
from locallama.evals.benchmarks import TASKS
from locallama.settings import Settings

ARC = [{"id": f"q{i}", "question": f"What is {i}?",
        "choices": {"text": ["one", "two", "three"], "label": ["A", "B", "C"]},
        "answerKey": "B"} for i in range(4)]
GSM = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"}
       for i in range(3)]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_hub_snapshot_layout_is_read_from_its_config_folder(tmp_path):
    root = tmp_path / "data"
    write_parquet(root / "ai2_arc" / "ARC-Challenge" / "test-00000-of-00001.parquet", ARC[:2])
    write_parquet(root / "ai2_arc" / "ARC-Challenge" / "train-00000-of-00001.parquet", ARC)
    write_parquet(root / "ai2_arc" / "ARC-Easy" / "test-00000-of-00001.parquet", ARC[2:])
    loaded = data.load(TASKS["arc_challenge"], data=root, shots=2)
    assert loaded.docs == ARC[:2]  # nested structs come back as dicts and lists
    assert loaded.fewshot == ARC and loaded.origin == str(root)


def test_a_task_folder_with_jsonl_shards_and_converted_parquet(tmp_path):
    root = tmp_path / "data"
    write_jsonl(root / "gsm8k" / "test-00000-of-00002.jsonl", GSM[:1])
    write_jsonl(root / "gsm8k" / "test-00001-of-00002.jsonl", GSM[1:])
    write_parquet(root / "gsm8k" / "train" / "0000.parquet", GSM)
    loaded = data.load(TASKS["gsm8k"], data=root, shots=1)
    assert loaded.docs == GSM and loaded.fewshot == GSM
    # zero shots: the few-shot split is not needed, so not read
    (root / "gsm8k" / "train" / "0000.parquet").unlink()
    assert data.load(TASKS["gsm8k"], data=root, shots=0).fewshot == []


def test_mmlu_answer_ints_and_winogrande_answer_strings_survive_parquet(tmp_path):
    mmlu = [{"question": "Q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"],
             "answer": 3}]
    wino = [{"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "2"}]
    write_parquet(tmp_path / "mmlu" / "all" / "test-00000-of-00001.parquet", mmlu)
    write_parquet(tmp_path / "winogrande" / "validation.parquet", wino)
    assert data.load(TASKS["mmlu"], data=tmp_path).docs == mmlu
    assert data.load(TASKS["winogrande"], data=tmp_path).docs == wino


def test_one_file_is_the_evaluation_split_with_its_few_shot_split_beside_it(tmp_path):
    test = write_parquet(tmp_path / "test-00000-of-00001.parquet", ARC[:1])
    write_parquet(tmp_path / "train-00000-of-00001.parquet", ARC[1:])
    runs = harness.plan([TASKS["arc_challenge"]], data=test, shots=3)
    assert len(runs[0].items) == 1 and runs[0].items[0].prompt.pairs[0][0].count("Question") == 4
    with pytest.raises(InvalidRequest, match="one task's split"):
        harness.plan([TASKS["arc_challenge"], TASKS["gsm8k"]], data=test)


def test_the_bundled_samples_are_marked_as_samples():
    for task in TASKS.values():
        loaded = data.load(task, samples=True, shots=task.shots)
        assert loaded.origin == "samples" and loaded.docs
    assert all(d["id"].startswith("locallama-sample-")
               for d in data.load(TASKS["arc_challenge"], samples=True).docs)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("test.jsonl", '{"question": "q"}\n', r"row 1: missing field 'choices'"),
    ("test.jsonl", '{"question": "q", "choices": {}, "answerKey": "A"}\nnot json\n',
     "line 2 is not JSON"),
    ("test.jsonl", json.dumps({**ARC[0], "answerKey": "Z"}) + "\n",
     "answerKey 'Z' is not one of the labels"),
    ("test.jsonl", json.dumps({**ARC[0], "question": 5}) + "\n", "field 'question' has the wrong"),
    ("test.parquet", "not parquet at all", "not a readable Parquet file"),
    ("test.jsonl", "", "no rows for arc_challenge"),
])
def test_malformed_files_are_one_line_errors(tmp_path, name, content, message):
    (tmp_path / "arc_challenge").mkdir()
    (tmp_path / "arc_challenge" / name).write_text(content)
    with pytest.raises(InvalidRequest, match=message) as info:
        data.load(TASKS["arc_challenge"], data=tmp_path)
    assert "\n" not in str(info.value)


def test_a_missing_split_names_what_was_looked_for(tmp_path):
    write_jsonl(tmp_path / "arc_challenge" / "test.jsonl", ARC)
    with pytest.raises(InvalidRequest, match="no 'train' split for arc_challenge"):
        data.load(TASKS["arc_challenge"], data=tmp_path, shots=25)
    with pytest.raises(InvalidRequest, match="no data at"):
        data.load(TASKS["arc_challenge"], data=tmp_path / "nowhere")


# -- the hub, faked ------------------------------------------------------------------


class FakeHub:
    """Answers hf_hub_download's HEAD and GET for dataset files, and 404 otherwise."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # "repo@revision/file" -> bytes
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                # /datasets/<owner>/<name>/resolve/<revision>/<file...>
                parts = self.path.split("?")[0].split("/")
                from urllib.parse import unquote

                key = (f"{parts[2]}/{parts[3]}@{unquote(parts[5])}/{'/'.join(parts[6:])}"
                       if len(parts) > 6 and parts[1] == "datasets" else "")
                content = hub.files.get(key)
                if content is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", '"' + hashlib.sha256(content).hexdigest() + '"')
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hub(tmp_path):
    fake = FakeHub()
    yield fake
    fake.server.shutdown()


def parquet_bytes(tmp_path: Path, rows: list[dict]) -> bytes:
    return write_parquet(tmp_path / "tmp.parquet", rows).read_bytes()


def test_the_hub_files_are_fetched_once_and_then_read_from_the_cache(tmp_path, hub):
    hub.files["openai/gsm8k@main/main/test-00000-of-00001.parquet"] = parquet_bytes(tmp_path, GSM)
    hub.files["openai/gsm8k@main/main/train-00000-of-00001.parquet"] = parquet_bytes(
        tmp_path, GSM[:2])
    settings = Settings(hf_endpoint=hub.url, hf_hub_cache=tmp_path / "cache")
    loaded = data.load(TASKS["gsm8k"], settings=settings, shots=1)
    assert loaded.docs == GSM and loaded.fewshot == GSM[:2]
    assert loaded.origin == f"{hub.url}/datasets/openai/gsm8k"
    # offline now: the cache answers
    offline = Settings(hf_endpoint="http://127.0.0.1:9", hf_hub_cache=tmp_path / "cache")
    assert data.load(TASKS["gsm8k"], settings=offline, shots=1).docs == GSM


def test_the_hubs_converted_parquet_branch_is_the_fallback(tmp_path, hub):
    rows = [{"ind": 1, "activity_label": "A", "ctx_a": "x.", "ctx_b": "y", "endings": ["a", "b"],
             "label": "1"}]
    hub.files["Rowan/hellaswag@refs/convert/parquet/default/validation/0000.parquet"] = (
        parquet_bytes(tmp_path, rows))
    settings = Settings(hf_endpoint=hub.url, hf_hub_cache=tmp_path / "cache")
    assert data.load(TASKS["hellaswag"], settings=settings).docs == rows
    assert any("data/validation-00000-of-00001.parquet" in r for r in hub.requests)


def test_no_network_and_no_cache_says_where_to_get_the_data(tmp_path, hub):
    offline = Settings(hf_endpoint="http://127.0.0.1:9", hf_hub_cache=tmp_path / "empty")
    with pytest.raises(InvalidRequest, match="cannot be reached.*--data PATH.*--samples"):
        data.load(TASKS["arc_challenge"], settings=offline)
    missing = Settings(hf_endpoint=hub.url, hf_hub_cache=tmp_path / "cache")
    with pytest.raises(PullError, match="no 'test' split"):
        data.load(TASKS["arc_challenge"], settings=missing)
