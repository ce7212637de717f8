"""``locallama pull --insecure`` is Ollama's flag for a registry that speaks plain
HTTP; the scheme it picks is tested in tests/store/test_pull_insecure.py."""

import json

from fakeregistry import fake_registry


def test_pull_insecure_is_a_known_flag_and_pulls(cli, tiny_gguf):
    with fake_registry() as registry:
        registry.add_model("library/tiny:latest", tiny_gguf)
        name = registry.url.removeprefix("http://") + "/library/tiny:latest"
        pulled = cli("pull", "--insecure", name)
    assert "Traceback" not in pulled.stdout + pulled.stderr
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr.splitlines()[-1] == "success"
    assert [m["name"] for m in json.loads(cli("list", "--json").stdout)] == [
        name.removesuffix(":latest") + ":latest"]
