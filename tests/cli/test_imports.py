"""``locallama import`` as a user types it: list what is there, adopt a folder."""

import json
import os

import pytest

from tinymodel import write_tiny_gguf


@pytest.fixture
def places(cli_env, tmp_path):
    """The known places, inside tmp_path: the user's own models are never looked at."""
    for key, folder in (("OLLAMA_MODELS", "ollama"), ("HF_HUB_CACHE", "hub"),
                        ("LMSTUDIO_MODELS", "lms")):
        cli_env[key] = str(tmp_path / folder)
        (tmp_path / folder).mkdir()
    return tmp_path


def test_list_then_adopt_everything(cli, places):
    repo = places / "lms" / "lmstudio-community" / "Tiny-GGUF"
    repo.mkdir(parents=True)
    model = write_tiny_gguf(repo / "Tiny-Q8_0.gguf")

    listed = cli("import", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [{
        "name": "hf.co/lmstudio-community/Tiny-GGUF:Q8_0", "source": "lmstudio",
        "size": model.stat().st_size, "path": str(model), "in_store": False}]
    table = cli("import")
    header, row = table.stdout.strip().splitlines()
    assert header.split() == ["NAME", "SOURCE", "SIZE", "STORED", "PATH"]
    assert row.split()[0] == "hf.co/lmstudio-community/Tiny-GGUF:Q8_0"
    assert row.split()[-2:] == ["no", str(model)]
    assert cli("list", "--json").stdout.strip() == "[]"  # listing adopts nothing

    adopted = cli("import", "--all")
    assert adopted.returncode == 0, adopted.stderr
    assert "imported hf.co/lmstudio-community/Tiny-GGUF:Q8_0" in adopted.stdout
    assert "hard link" in adopted.stdout
    assert json.loads(cli("import", "--json").stdout)[0]["in_store"] is True
    shown = cli("show", "hf.co/lmstudio-community/Tiny-GGUF:q8_0")
    assert "architecture        llama" in shown.stdout


def test_adopt_a_folder_of_gguf_files(cli, places, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    first = write_tiny_gguf(folder / "Small-Model-Q8_0.gguf")
    write_tiny_gguf(folder / "other.gguf", seed=1)

    result = cli("import", str(folder))
    assert result.returncode == 0, result.stderr
    names = sorted(m["name"] for m in json.loads(cli("list", "--json").stdout))
    assert names == ["other:latest", "small-model:q8_0"]
    assert first.stat().st_nlink == 2  # linked, not copied

    again = cli("import", str(folder))
    assert again.returncode == 0
    assert again.stdout.count("is already in the store") == 2

    named = cli("import", str(first), "--name", "mine")
    assert named.returncode == 0 and "imported mine:latest" in named.stdout

    assert cli("rm", "small-model:q8_0", "mine").returncode == 0
    assert first.is_file() and first.stat().st_nlink == 1


def test_import_errors_are_one_line(cli, places, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all")
    cases = [
        (("import", str(bad)), "not a GGUF file"),
        (("import", str(tmp_path / "nowhere")), "no such file or folder"),
        (("import", str(tmp_path / "hub")), "no models found"),
        (("import", str(places / "ollama"), "--name", "x"), "--name"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], args
    assert json.loads(cli("list", "--json").stdout) == []
    assert not os.path.exists(tmp_path / "models" / "manifests")


def test_import_refuses_a_file_llama_cpp_cannot_load(cli, places, tmp_path):
    bad = write_tiny_gguf(tmp_path / "bogus.gguf",
                          extra_metadata={"tokenizer.ggml.model": "bogus"})
    result = cli("import", str(bad))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["Error: llama.cpp cannot load this model file: error loading model "
                     "vocabulary: unknown tokenizer: 'bogus'"]
    assert json.loads(cli("list", "--json").stdout) == []
