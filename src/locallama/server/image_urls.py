"""Images given by http(s) URL (OpenAI's ``image_url`` parts), fetched for the request.

The faces' translations keep such a URL in ``Message.images`` where a base64 image
would be; before the Runtime sees the request, ``fetch_images`` replaces each URL by
the fetched bytes in base64, with httpx, under ``LOCALLAMA_MAX_IMAGE_BYTES`` (the
body is counted as it arrives, so a larger one is cut off, not read) and
``LOCALLAMA_IMAGE_FETCH_TIMEOUT``.  Any failure is an InvalidRequest naming the URL:
a 400 in the face's shape, with nothing run.

Which URLs are fetched is ``LOCALLAMA_IMAGE_FETCH``: ``public`` (the default) fetches
only from hosts whose every address is a global one, so a request cannot make the
server read this machine's or its network's own services (loopback, private,
link-local, e.g. a cloud metadata address); each redirect is checked the same way.
``all`` fetches any http(s) URL; ``off`` refuses every URL (data URLs still work).
The name is resolved once for the check and again by the connection, so a host
whose DNS answer changes in between is not covered: ``off`` is the setting for a
server exposed to clients that are not trusted.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from urllib.parse import urljoin

import httpx

from locallama.errors import InvalidRequest
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest
from locallama.settings import Settings
from locallama.units import format_bytes

_SCHEMES = ("http://", "https://")
_MAX_REDIRECTS = 5


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
    if settings.image_fetch == "off":
        raise InvalidRequest(f"the image at {shown} was not fetched: image URLs are turned off "
                             "here (LOCALLAMA_IMAGE_FETCH=off); send it as a data URL",
                             "image_url")
    try:
        # the limit is for the whole fetch (httpx's own is per read: a server sending a
        # byte a second would never reach it)
        async with asyncio.timeout(settings.image_fetch_timeout), \
                httpx.AsyncClient(timeout=settings.image_fetch_timeout) as client, \
                _follow(client, url, shown, settings.image_fetch == "public") as answer:
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
    except (httpx.TimeoutException, TimeoutError):
        raise InvalidRequest(f"the image at {shown} could not be fetched within "
                             f"{settings.image_fetch_timeout:g} s (LOCALLAMA_IMAGE_FETCH_TIMEOUT)",
                             "image_url") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise InvalidRequest(f"the image at {shown} could not be fetched: {exc}",
                             "image_url") from None
    if not data:
        raise InvalidRequest(f"the image at {shown} is empty", "image_url")
    return base64.b64encode(bytes(data)).decode()


class _follow:
    """``GET url`` following up to ``_MAX_REDIRECTS`` redirects, each hop's host checked
    (``public``) before it is asked; an async context manager over the final answer."""

    def __init__(self, client: httpx.AsyncClient, url: str, shown: str, public: bool) -> None:
        self.client, self.url, self.shown, self.public = client, url, shown, public
        self.answer: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        url = self.url
        for _ in range(_MAX_REDIRECTS + 1):
            if self.public:
                await _check_public(url, self.shown)
            answer = await self.client.send(self.client.build_request("GET", url), stream=True)
            if not answer.has_redirect_location:  # a 3xx without Location is the answer
                self.answer = answer
                return answer
            await answer.aclose()
            url = urljoin(url, answer.headers["location"])
            if not is_url(url):
                break
        raise InvalidRequest(f"the image at {self.shown} could not be fetched: too many or "
                             "bad redirects", "image_url")

    async def __aexit__(self, *exc: object) -> None:
        if self.answer is not None:
            await self.answer.aclose()


async def _check_public(url: str, shown: str) -> None:
    """InvalidRequest unless every address ``url``'s host resolves to is a global one."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(f"the image at {shown} could not be fetched: {exc}",
                             "image_url") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise InvalidRequest(
                f"the image at {shown} was not fetched: {host} is a local or private address "
                f"({address}); only public hosts are fetched (LOCALLAMA_IMAGE_FETCH=public)",
                "image_url")
