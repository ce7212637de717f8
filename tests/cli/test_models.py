"""The model commands as a user types them: list, show, create, cp, rm, pull."""

import json


def no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr


def test_create_list_show_cp_rm(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(
        f'FROM {tiny_gguf}\nPARAMETER temperature 0.3\nPARAMETER stop "###"\n'
        'SYSTEM """Answer briefly."""\nLICENSE MIT\n'
    )
    created = cli("create", "mine:v1")
    assert created.returncode == 0, created.stderr
    assert "success" in created.stderr

    listing = cli("list")
    assert listing.returncode == 0
    header, row = listing.stdout.strip().splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.split()[0] == "mine:v1" and len(row.split()[1]) == 12

    shown = cli("show", "mine:v1")
    assert "architecture        llama" in shown.stdout
    assert "quantization        F32" in shown.stdout
    assert "temperature" in shown.stdout and "Answer briefly." in shown.stdout

    modelfile = cli("show", "mine:v1", "--modelfile").stdout
    assert "PARAMETER temperature 0.3" in modelfile
    assert 'PARAMETER stop "###"' in modelfile
    assert "SYSTEM" in modelfile and "LICENSE" in modelfile

    data = json.loads(cli("show", "mine:v1", "--json").stdout)
    assert data["architecture"] == "llama" and data["parameters"]["stop"] == ["###"]

    assert cli("cp", "mine:v1", "copy").returncode == 0
    names = [m["name"] for m in json.loads(cli("list", "--json").stdout)]
    assert sorted(names) == ["copy:latest", "mine:v1"]

    assert cli("rm", "mine:v1").returncode == 0
    assert [m["name"] for m in json.loads(cli("list", "--json").stdout)] == ["copy:latest"]
    assert cli("rm", "copy").returncode == 0
    assert json.loads(cli("list", "--json").stdout) == []
    assert list((tmp_path / "models" / "blobs").iterdir()) == []


def test_errors_are_one_line(cli, tmp_path):
    cases = [
        (("show", "ghost"), "model 'ghost:latest' not found"),
        (("rm", "ghost"), "not found"),
        (("cp", "ghost", "x"), "not found"),
        (("show", "../../etc/passwd"), "invalid model name"),
        (("pull", "llama3:70b"), "available offline"),
        (("create", "x", "-f", "nope"), "no Modelfile"),
        (("run", "ghost", "hi"), "not found"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        no_traceback(result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], args


def test_broken_modelfile_names_the_line(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\nPARAMETER temperature\n")
    result = cli("create", "x")
    assert result.returncode == 1
    assert "line 2" in result.stderr
    no_traceback(result)
    assert json.loads(cli("list", "--json").stdout) == []


def test_malformed_gguf_is_refused_cleanly(cli, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" * 100)
    (tmp_path / "Modelfile").write_text(f"FROM {bad}\n")
    result = cli("create", "bad")
    assert result.returncode == 1
    assert "GGUF" in result.stderr
    no_traceback(result)


def test_version_and_help(cli):
    assert cli("--version").stdout.startswith("locallama version")
    out = cli("--help").stdout
    for command in ("run", "pull", "list", "show", "create", "cp", "rm"):
        assert command in out


def test_pull_from_a_registry_draws_a_bar_per_blob(cli, cli_env, tiny_gguf):
    from fakeregistry import fake_registry

    with fake_registry() as registry:
        registry.add_model("library/tiny:latest", tiny_gguf, params={"temperature": 0.1})
        cli_env["LOCALLAMA_REGISTRY"] = registry.url
        pulled = cli("pull", "tiny")
    no_traceback(pulled)
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stderr.splitlines()
    assert lines[-1] == "success" and "verifying sha256 digest" in lines
    assert any(line.startswith("pulling ") and "━" in line for line in lines)
    assert [m["name"] for m in json.loads(cli("list", "--json").stdout)] == ["tiny:latest"]
