"""Images in a prompt, as plain data (no llama.cpp): what the runtime, the runner's
channel and the scheduler pass around.

A prompt with images is a token list in which each image occupies as many positions
as the projector makes embeddings of it; those positions hold a *placeholder id*, a
negative number derived from the image's sha256, so that a slot's cached prefix
matches a new prompt through an image only when it is the same image at the same
place (``engine/slots.py`` compares ids).  The embeddings themselves are computed
beside the model (``engine/vision.py``) and never travel.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from locallama.errors import InvalidRequest

#: where an image goes in the prompt text: llama.cpp's mtmd default media marker
MARKER = "<__media__>"


@dataclass(frozen=True)
class ImageSpan:
    """One image of a prompt: its ``n_tokens`` embeddings sit at prompt positions
    ``start`` .. ``start + n_tokens - 1``.  ``digest`` is the sha256 (hex) of ``data``,
    the image file's bytes (PNG, JPEG, ... as stb_image reads them)."""

    start: int
    n_tokens: int
    digest: str
    data: bytes

    @property
    def end(self) -> int:
        return self.start + self.n_tokens

    @property
    def placeholder(self) -> int:
        return placeholder(self.digest)


def placeholder(digest: str) -> int:
    """The (negative) id standing for every position of the image with this sha256."""
    return -1 - int(digest[:15], 16)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_images(images: list[str] | None, field: str = "images") -> list[bytes]:
    """Base64 strings (Ollama's ``images``; a data URL's payload) -> the files' bytes.

    InvalidRequest naming ``field[i]`` for one that is not base64 or is empty."""
    out = []
    for i, text in enumerate(images or ()):
        if not isinstance(text, str):
            raise InvalidRequest(f"{field}[{i}] must be a base64 string", f"{field}[{i}]")
        if text.startswith("data:"):  # a data URL where plain base64 was expected
            text = text.partition(",")[2]
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{field}[{i}] is not valid base64", f"{field}[{i}]") from None
        if not data:
            raise InvalidRequest(f"{field}[{i}] is empty", f"{field}[{i}]")
        out.append(_png_from_webp(data, f"{field}[{i}]") if is_webp(data) else data)
    return out


def is_webp(data: bytes) -> bool:
    """A WebP file (a RIFF container of kind ``WEBP``), which llama.cpp's image decoder
    (stb_image) does not read."""
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _png_from_webp(data: bytes, field: str) -> bytes:
    """A WebP image as PNG bytes (Pillow), for mtmd to read.  InvalidRequest naming
    ``field`` when it does not decode or is a decompression bomb (Pillow's limit)."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["WEBP"]) as image:
                image.seek(0)  # an animated WebP: its first frame
                png = io.BytesIO()
                image.convert("RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB").save(
                    png, "PNG", compress_level=1)
    except (OSError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"{field} is not a WebP image that can be read: {exc}",
                             field) from None
    return png.getvalue()


def spans_with_data(found: list[tuple[int, int, str]], images: list[bytes],
                    shift: int = 0) -> tuple[ImageSpan, ...]:
    """The spans a tokenization found ((start, n_tokens, digest) in prompt order) with
    their images' bytes put back (matched by digest), starts moved by ``shift``."""
    by_digest = {digest_of(data): data for data in images}
    return tuple(ImageSpan(start + shift, n, digest, by_digest[digest])
                 for start, n, digest in found)


def text_tokens(tokens: list[int]) -> list[int]:
    """The prompt's real token ids, image placeholders left out."""
    return [t for t in tokens if t >= 0]
