"""An image file named in a REPL message is attached to it, as ``ollama run`` does."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fakeruntime import FakeRuntime
from locallama.cli.repl import Repl
from locallama.cli.repl_images import attach_images
from locallama.errors import InvalidRequest
from locallama.settings import Settings
from tinyvision import png_bytes


def picture(folder: Path, name: str = "cat.png") -> Path:
    path = folder / name
    path.write_bytes(png_bytes(1))
    return path


def test_an_existing_image_path_is_taken_out_and_attached(tmp_path: Path) -> None:
    cat = picture(tmp_path)
    text, images, files = attach_images(f"what is in {cat} please?", 1 << 20)
    assert text == "what is in please?"
    assert images == [base64.b64encode(cat.read_bytes()).decode()]
    assert files == [cat]


def test_spaces_quotes_and_missing_files(tmp_path: Path) -> None:
    spaced = picture(tmp_path, "my cat.PNG")
    escaped = str(spaced).replace(" ", "\\ ")
    assert attach_images(f"look {escaped}", 1 << 20)[2] == [spaced]
    assert attach_images(f'look "{spaced}" now', 1 << 20)[0] == "look now"
    missing = f"see {tmp_path}/nothing.png and /etc/passwd"
    assert attach_images(missing, 1 << 20) == (missing, [], [])
    assert attach_images("no paths here.png", 1 << 20)[2] == []


def test_an_image_past_the_limit_is_one_line(tmp_path: Path) -> None:
    cat = picture(tmp_path)
    with pytest.raises(InvalidRequest, match="LOCALLAMA_MAX_IMAGE_BYTES"):
        attach_images(f"what is {cat}", 100)


def test_the_repl_sends_the_image_with_the_message(tmp_path: Path, capsys) -> None:
    cat = picture(tmp_path)
    runtime = FakeRuntime()
    runtime.settings = Settings()
    repl = Repl(runtime, "seer", history_file=tmp_path / "history")
    repl.send(f"describe {cat}")
    sent = runtime.requests[-1].messages[-1]
    assert sent.content == "describe" and len(sent.images) == 1
    assert repl.messages[0].images == sent.images  # the next turn still has it
    assert f"Added image '{cat}'" in capsys.readouterr().out
