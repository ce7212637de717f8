"""Image files named in a REPL message, attached to it as ``ollama run`` does.

A word of the message that is a path (``/…``, ``./…``, ``../…`` or ``~/…``, spaces
escaped with a backslash or the whole path in quotes) to an existing file ending in an
image extension is read, taken out of the text and sent as one of the message's
images; a path that names no file stays in the text as written.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from locallama.errors import InvalidRequest
from locallama.units import format_bytes

EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp")
_EXT = "|".join(EXTENSIONS)
_PATH = re.compile(
    r"""(?P<q>['"])(?P<quoted>(?:~|\.{1,2})?/[^'"]+?\.(?:""" + _EXT + r"""))(?P=q)"""
    r"""|(?<!\S)(?P<bare>(?:~|\.{1,2})?/(?:\\ |[^\s])+?\.(?:""" + _EXT + r"""))(?=\s|$)""",
    re.IGNORECASE,
)


def attach_images(text: str, max_bytes: int) -> tuple[str, list[str], list[Path]]:
    """(the text without the image paths, the images in base64, the files attached).

    InvalidRequest for an image file larger than ``max_bytes`` (the server's
    LOCALLAMA_MAX_IMAGE_BYTES) or one that cannot be read."""
    images: list[str] = []
    files: list[Path] = []

    def take(match: re.Match[str]) -> str:
        raw = match.group("quoted") or match.group("bare").replace("\\ ", " ")
        path = Path(raw).expanduser()
        if not path.is_file():
            return match.group(0)
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidRequest(f"{path} is {format_bytes(size)}, larger than "
                                 f"{format_bytes(max_bytes)} (LOCALLAMA_MAX_IMAGE_BYTES)")
        try:
            images.append(base64.b64encode(path.read_bytes()).decode())
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from None
        files.append(path)
        return ""

    rest = _PATH.sub(take, text)
    return (" ".join(rest.split()) if files else text), images, files
