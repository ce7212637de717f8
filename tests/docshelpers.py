"""Helpers for the ``ask --docs`` tests: a bag-of-words Runtime and a PDF writer.

A tiny random-weight model embeds at random, so ranking cannot be tested on it;
here a text's vector counts its words (hashed into a few hundred dimensions), and
the passage sharing most words with a question ranks first, as it should.  Every
``embed`` call is recorded, so a test can see what was (re-)embedded.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from fakeruntime import FakeRuntime
from locallama.runtime.types import Chunk, Embeddings, ModelDetails

DIMS = 512
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in",
    "is", "it", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who", "why",
    "with"})


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def bag_of_words(text: str) -> list[float]:
    vector = [0.0] * DIMS
    for word in words(text):
        vector[zlib.crc32(word.encode()) % DIMS] += 1.0
    return vector


class WordsRuntime(FakeRuntime):
    """Bag-of-words ``embed``, a word-count ``tokenize``, a scripted ``chat`` answer."""

    def __init__(self, answer: str = "Cats sleep [cats.md#1].", chat_model: bool = True) -> None:
        super().__init__()
        self.script = [Chunk(text=answer), Chunk(done=True, done_reason="stop")]
        self.chat_model = chat_model
        self.digests: dict[str, str] = {}  # name -> digest; change one to "re-pull" it
        self.embed_calls: list[tuple[str, list[str]]] = []

    @property
    def embedded(self) -> list[str]:
        """Every text embedded so far, in order."""
        return [text for _, inputs in self.embed_calls for text in inputs]

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: Any = None) -> Embeddings:
        self.embed_calls.append((model, list(inputs)))
        return Embeddings([bag_of_words(t) for t in inputs], sum(len(words(t)) for t in inputs))

    def tokenize(self, model: str, text: str) -> list[int]:
        return [0] + [1] * len(text.split())  # BOS and one token a word

    def show(self, model: str) -> ModelDetails:
        return ModelDetails(
            name=model, digest=self.digests.get(model, f"sha256:{model}"), size=1,
            architecture="fake", parameter_count=1, context_length=8192,
            embedding_length=DIMS, quantization="F32",
            template="{{ .Prompt }}" if self.chat_model else None, system=None,
            parameters={}, messages=[], licenses=[], modelfile="")


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF whose pages show these lines in Helvetica (pypdf writes no text by itself)."""
    writer = PdfWriter()
    for line in pages:
        page = writer.add_blank_page(400, 200)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                 NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 20 100 Td ({line}) Tj ET".encode("latin-1"))
        page.replace_contents(stream)
    with path.open("wb") as f:
        writer.write(f)
    return path
