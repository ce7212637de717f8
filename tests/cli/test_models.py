"""The model commands as a user types them: list, show, create, cp, rm, pull."""

import json


def no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr


def test_create_list_show_cp_rm(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(
        f'FROM {tiny_gguf}\nPARAMETER temperature 0.3\nPARAMETER stop "###"\n'
        'SYSTEM """Answer briefly."""\nLICENSE MIT\nMESSAGE user Hi\nMESSAGE assistant Hello\n'
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
    assert data["messages"] == [{"role": "user", "content": "Hi"},  # as stored, nothing added
                                {"role": "assistant", "content": "Hello"}]

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


# -- faults: a full disk, broken manifests ------------------------------------------------------

# Runs the real command with every fsync failing as a full disk does (delayed allocation
# reports ENOSPC there): the store's writes all end with one.
_DISK_FULL = (
    "import errno, os, sys\n"
    "def fsync(fd):\n"
    "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    "os.fsync = fsync\n"
    "from locallama.cli import main\n"
    "sys.argv[0] = 'locallama'\n"
    "main()\n"
)


def _run_disk_full(cli_env, tmp_path, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _DISK_FULL, *args], env=cli_env, cwd=tmp_path,
                          input="", capture_output=True, text=True, timeout=120)


def _leftovers(models):
    return [p.name for p in models.rglob("*")
            if p.is_file() and p.name.endswith(("-partial", ".partial", ".tmp"))]


def _one_error_line(result, starts):
    no_traceback(result)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(starts), result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]


def test_a_full_disk_is_one_line_for_pull_create_quantize_and_cp(cli, cli_env, tmp_path,
                                                                  tiny_gguf):
    from fakeregistry import fake_registry

    models = tmp_path / "models"
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
    assert cli("create", "tiny").returncode == 0
    before = sorted(p.name for p in models.rglob("*"))
    full = "Error: no space left on the device that holds "
    with fake_registry() as registry:
        registry.add_model("library/other:latest", tiny_gguf, params={"temperature": 0.1})
        cli_env["LOCALLAMA_REGISTRY"] = registry.url
        pulled = _run_disk_full(cli_env, tmp_path, "pull", "other")
    _one_error_line(pulled, full)
    for args in (("create", "again"), ("quantize", "tiny", "small", "-q", "q8_0"),
                 ("cp", "tiny", "copy")):
        result = _run_disk_full(cli_env, tmp_path, *args)
        _one_error_line(result, full)  # after the progress lines quantize draws
        if args[0] != "quantize":
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert _leftovers(models) == []
    assert [m["name"] for m in json.loads(cli("list", "--json").stdout)] == ["tiny:latest"]
    # the failed pull may have stored small blobs; no manifest, no partial, tiny intact
    assert set(before) <= {p.name for p in models.rglob("*")}


def test_create_and_pull_on_a_full_tmpfs_are_one_line(cli, cli_env, tmp_path, tiny_gguf):
    from fakeregistry import fake_registry
    from faulthelpers import tmpfs

    with tmpfs(tmp_path / "small", "256k") as models:
        cli_env["LOCALLAMA_MODELS"] = str(models)
        (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
        created = cli("create", "tiny")
        _one_error_line(created, f"Error: no space left on the device that holds {models}")
        assert "(needed ~" in created.stderr and "free " in created.stderr
        assert len(created.stderr.strip().splitlines()) == 1
        with fake_registry() as registry:
            registry.add_model("library/tiny:latest", tiny_gguf)
            cli_env["LOCALLAMA_REGISTRY"] = registry.url
            pulled = cli("pull", "tiny")
        _one_error_line(pulled, f"Error: no space left on the device that holds {models}")
        assert _leftovers(models) == []
        assert json.loads(cli("list", "--json").stdout) == []


def test_a_broken_model_is_listed_as_broken_and_rm_removes_it(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
    assert cli("create", "good").returncode == 0
    assert cli("cp", "good", "bad").returncode == 0
    manifest = tmp_path / "models/manifests/registry.ollama.ai/library/bad/latest"
    manifest.write_text(manifest.read_text().replace('"sha256:', '"sha256:oops', 1))

    listing = cli("list")
    no_traceback(listing)
    assert listing.returncode == 0
    header, *rows = listing.stdout.strip().splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED", "STATUS"]
    [bad] = [r for r in rows if r.startswith("bad:latest")]
    assert "BROKEN: the file is not a valid manifest: invalid digest 'sha256:oops" in bad
    [good] = [r for r in rows if r.startswith("good:latest")]
    assert "BROKEN" not in good
    assert "'locallama rm NAME' removes it" in listing.stderr
    listed = {m["name"]: m for m in json.loads(cli("list", "--json").stdout)}
    assert "invalid digest" in listed["bad:latest"]["broken"]
    assert "broken" not in listed["good:latest"]

    shown = cli("show", "bad")
    no_traceback(shown)
    assert shown.returncode == 1
    assert shown.stderr.startswith("Error: manifest of bad:latest is not a valid manifest")
    assert "remove it with 'locallama rm bad:latest'" in shown.stderr

    removed = cli("rm", "bad")
    assert removed.returncode == 0, removed.stderr
    assert not manifest.exists()
    assert [m["name"] for m in json.loads(cli("list", "--json").stdout)] == ["good:latest"]
    assert cli("show", "good").returncode == 0  # its blobs, shared with bad, were kept
