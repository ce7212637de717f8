"""``locallama create NAME -f Modelfile`` with FROM a safetensors folder, as typed:
a bar while it converts, then success; a bad folder is one Error line.  Needs the
``convert`` extra (skipped without it)."""

from __future__ import annotations

import pytest
from tests.hfmodels import write_tiny_llama

from locallama.errors import NotSupported
from locallama.settings import Settings
from locallama.store.hf_convert import converter_dir


def _missing() -> str | None:
    try:
        converter_dir(Settings.from_env().converter)
    except NotSupported as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"the convert extra: {_missing()}")


def test_create_from_a_folder_converts_with_a_bar_and_quantizes(cli, tmp_path):
    write_tiny_llama(tmp_path / "tiny-llama")
    (tmp_path / "Modelfile").write_text("FROM ./tiny-llama\n")
    made = cli("create", "tiny", "-q", "q8_0")
    assert made.returncode == 0, made.stderr
    assert "converting LlamaForCausalLM" in made.stderr and "success" in made.stderr
    assert "quantizing F16 to Q8_0" in made.stderr
    shown = cli("show", "tiny")
    assert shown.returncode == 0 and "Q8_0" in shown.stdout

    (tmp_path / "tiny-llama" / "tokenizer.model").unlink()
    failed = cli("create", "broken")
    assert failed.returncode != 0
    lines = failed.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: tiny-llama has no tokenizer") and len(lines) == 1
