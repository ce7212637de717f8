"""A small folder of documents that the ``ask`` tests retrieve from (the ``docs``
fixture of tests/everyday/conftest.py writes it)."""

from __future__ import annotations

from pathlib import Path

CATS = "Cats sleep most of the day and hunt mice at night."
DOGS = "Dogs bark at the postman and fetch sticks in the park."
BIRDS = "Birds migrate south in autumn, flying thousands of kilometres."


def write_docs(folder: Path) -> Path:
    """``folder/cats.md``, ``folder/dogs.md`` and ``folder/sub/birds.txt``, one
    sentence each; returns ``folder``."""
    (folder / "sub").mkdir(parents=True)
    (folder / "cats.md").write_text(CATS)
    (folder / "dogs.md").write_text(DOGS)
    (folder / "sub" / "birds.txt").write_text(BIRDS)
    return folder
