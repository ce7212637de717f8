"""Images given by http(s) URL (OpenAI's ``image_url`` parts), fetched for the request.

The faces' translations keep such a URL in ``Message.images`` where a base64 image
would be; before the Runtime sees the request, ``fetch_images`` replaces each URL by
the fetched bytes in base64, with httpx, under ``LOCALLAMA_MAX_IMAGE_BYTES`` (the
body is counted as it arrives, so a larger one is cut off, not read) and
``LOCALLAMA_IMAGE_FETCH_TIMEOUT``.  Any failure is an InvalidRequest naming the URL:
a 400 in the face's shape, with nothing run.
"""

from __future__ import annotations

import base64

import httpx

from locallama.errors import InvalidRequest
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest
from locallama.settings import Settings
from locallama.units import format_bytes

_SCHEMES = ("http://", "https://")


def is_url(image: str) -> bool:
    return image.startswith(_SCHEMES)


async def fetch_images(runs: list[ChatRequest], runtime: Runtime) -> None:
    """Replace every http(s) URL among the runs' message images by its base64 bytes
    (one fetch per distinct URL; the runs are the choices of one request), under the
    limits of ``runtime.settings`` (read only when there is a URL to fetch)."""
    fetched: dict[str, str] = {}
    for run in runs:
        for message in run.messages:
            for i, image in enumerate(message.images):
                if not is_url(image):
                    continue
                if image not in fetched:
                    fetched[image] = await fetch_image(image, runtime.settings)
                message.images[i] = fetched[image]


async def fetch_image(url: str, settings: Settings) -> str:
    """The image at ``url`` in base64; InvalidRequest when it cannot be fetched, is not
    a 2xx answer, or is larger than ``settings.max_image_bytes``."""
    limit = settings.max_image_bytes
    shown = url if len(url) <= 200 else url[:200] + "..."
    try:
        async with httpx.AsyncClient(timeout=settings.image_fetch_timeout,
                                     follow_redirects=True) as client, \
                client.stream("GET", url) as answer:
            if answer.status_code // 100 != 2:
                raise InvalidRequest(f"the image at {shown} could not be fetched: HTTP "
                                     f"{answer.status_code}", "image_url")
            size = int(answer.headers.get("content-length") or 0)
            data = bytearray()
            if size <= limit:
                async for block in answer.aiter_bytes():
                    data += block
                    if len(data) > limit:
                        break
            if size > limit or len(data) > limit:
                raise InvalidRequest(
                    f"the image at {shown} is larger than {format_bytes(limit)} "
                    "(LOCALLAMA_MAX_IMAGE_BYTES)", "image_url")
    except httpx.TimeoutException:
        raise InvalidRequest(f"the image at {shown} could not be fetched within "
                             f"{settings.image_fetch_timeout:g} s (LOCALLAMA_IMAGE_FETCH_TIMEOUT)",
                             "image_url") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise InvalidRequest(f"the image at {shown} could not be fetched: {exc}",
                             "image_url") from None
    if not data:
        raise InvalidRequest(f"the image at {shown} is empty", "image_url")
    return base64.b64encode(bytes(data)).decode()
