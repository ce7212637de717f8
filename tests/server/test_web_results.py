"""GET /ui/api/results: the results folder's files, grouped as `locallama report`
groups them; read-only, names only from the folder's own listing."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from fakeruntime import FakeRuntime
from liveserver import free_port, serve
from locallama.settings import Settings
from resultfiles import write_results


def _settings(tmp: Path, **kw) -> Settings:
    return Settings(host="127.0.0.1", port=free_port(), models_dir=tmp / "models",
                    history_file=tmp / "history", results_dir=tmp / "results", **kw)


def test_results_are_listed_grouped_and_bad_files_skipped(tmp_path):
    write_results(tmp_path / "results")
    (tmp_path / "results" / "broken.json").write_text("{not json")
    (tmp_path / "results" / "notes.txt").write_text("not a result")
    (tmp_path / "results" / "sub.json").mkdir()  # not a regular file
    (tmp_path / "secret.json").write_text('{"kind": "perplexity"}')
    os.symlink(tmp_path / "results" / "bench.json", tmp_path / "results" / ".hidden.json")
    with serve(FakeRuntime(), _settings(tmp_path)) as url:
        body = httpx.get(url + "/ui/api/results").json()
        names = sorted(f["name"] for f in body["files"])
        assert names == ["bench-q8.json", "bench.json", "broken.json", "eval-q4.json",
                         "ppl-q4.json", "ppl-q8.json"]
        assert body["dir"] == str(tmp_path / "results")
        [skipped] = body["skipped"]
        assert skipped["name"] == "broken.json" and "not a JSON result file" in skipped["error"]
        assert str(tmp_path) not in skipped["error"]  # names, not the server's paths
        report = body["report"]
        assert [m["name"] for m in report["models"]] == ["gemma3:270m", "gemma3:270m-q8"]
        q4 = report["models"][0]
        assert q4["pp"]["tokens_per_second"] == 400 and q4["perplexity"]["value"] == 31.25
        assert q4["tasks"]["arc_challenge"]["metric"] == "acc_norm"
        assert report["tasks"] == ["arc_challenge"]

        # a chosen subset; names outside the listing (a path, another folder) are 400s
        some = httpx.get(url + "/ui/api/results",
                         params=[("file", "bench-q8.json"), ("file", "ppl-q8.json")]).json()
        assert [m["name"] for m in some["report"]["models"]] == ["gemma3:270m-q8"]
        for bad in ("../secret.json", "/etc/passwd", "notes.txt", "sub.json", ".hidden.json"):
            answer = httpx.get(url + "/ui/api/results", params={"file": bad})
            assert answer.status_code == 400, bad
            assert "no result file named" in answer.json()["error"]


def test_an_absent_folder_holds_no_results_and_the_key_is_asked(tmp_path):
    with serve(FakeRuntime(), _settings(tmp_path)) as url:
        body = httpx.get(url + "/ui/api/results").json()
        assert body == {"dir": str(tmp_path / "results"), "files": [], "skipped": [],
                        "report": None}
    with serve(FakeRuntime(), _settings(tmp_path, api_key="k")) as url:
        assert httpx.get(url + "/ui/api/results").status_code == 401
        answer = httpx.get(url + "/ui/api/results", headers={"Authorization": "Bearer k"})
        assert answer.status_code == 200


def test_the_results_folder_is_a_setting():
    env = {"LOCALLAMA_HOME": "/h"}
    assert Settings.from_env(env).results_dir == Path("/h/results")
    assert Settings.from_env({**env, "LOCALLAMA_RESULTS": "/r"}).results_dir == Path("/r")
