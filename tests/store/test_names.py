import pytest

from locallama.errors import InvalidModelName
from locallama.store.names import parse_name


@pytest.mark.parametrize(
    ("text", "parts", "display"),
    [
        ("gemma3", ("registry.ollama.ai", "library", "gemma3", "latest"), "gemma3:latest"),
        ("gemma3:270m", ("registry.ollama.ai", "library", "gemma3", "270m"), "gemma3:270m"),
        ("me/coder:v1.2", ("registry.ollama.ai", "me", "coder", "v1.2"), "me/coder:v1.2"),
        ("hf.co/owner/repo:Q4_K_M", ("hf.co", "owner", "repo", "Q4_K_M"),
         "hf.co/owner/repo:Q4_K_M"),
        ("localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t"), "localhost:5000/ns/m:t"),
        ("https://example.com/ns/m", ("example.com", "ns", "m", "latest"),
         "example.com/ns/m:latest"),
    ],
)
def test_parse_fills_ollama_defaults(text, parts, display):
    name = parse_name(text)
    assert name.parts == parts
    assert name.display == display


def test_names_compare_without_case():
    assert parse_name("Gemma3:270M").key() == parse_name("gemma3:270m").key()


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "../etc/passwd", "a/../../b", "/abs/path", "a\\b", "a//b", "a/b/c/d",
        "model:", ":tag", ".hidden", "ns.with.dot/model", "a:b:c", "m@sha256:abc",
        "x" * 129, "bad name", "m:t/a", "./model", "-dash",
    ],
)
def test_invalid_names_are_refused_with_a_clear_error(text):
    with pytest.raises(InvalidModelName) as info:
        parse_name(text)
    assert "model name" in str(info.value)
