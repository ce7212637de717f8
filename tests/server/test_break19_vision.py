"""Vision and safetensors-folder create, driven with inputs the feature tests did not
try (a tester's findings, each test one bug that was fixed)."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locallama.api.ollama import uploaded_folder
from locallama.cli import models as models_cmd
from locallama.errors import InvalidRequest
from locallama.server.image_urls import fetch_image
from locallama.settings import Settings
from runtimes import create
from tinyvision import png_bytes, write_tiny_projector

PNG = png_bytes(1)


class _Odd(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/drip":  # a byte at a time, each well inside httpx's read timeout
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            for i in range(len(PNG)):
                try:
                    self.wfile.write(PNG[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
        elif self.path == "/no-location":  # a 302 that says nowhere to go
            self.send_response(302)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def odd_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(url: str, timeout: float = 10.0) -> str:
    settings = Settings(image_fetch="all", image_fetch_timeout=timeout)
    try:
        return asyncio.run(fetch_image(url, settings))
    except InvalidRequest as exc:
        return f"400: {exc}"


def test_a_slow_drip_image_url_stops_at_the_fetch_timeout(odd_host: str) -> None:
    # httpx's timeout is per read: a server sending a byte every 50 ms took 10 minutes
    # for this PNG whatever LOCALLAMA_IMAGE_FETCH_TIMEOUT said
    started = time.monotonic()
    answer = fetch(f"{odd_host}/drip", timeout=1.0)
    assert time.monotonic() - started < 5
    assert answer.startswith("400: ") and "LOCALLAMA_IMAGE_FETCH_TIMEOUT" in answer


def test_a_redirect_without_location_is_a_400_not_a_500(odd_host: str) -> None:
    # was KeyError 'location' -> "internal error" 500
    answer = fetch(f"{odd_host}/no-location")
    assert answer.startswith("400: ") and "HTTP 302" in answer


def test_an_upload_naming_a_file_and_its_folder_is_a_400(tmp_path: Path) -> None:
    # {"config.json": d, "config.json/x": d} made the server's mkdir/symlink fail: a 500
    def blob_path(digest: str) -> Path:
        return tmp_path / digest

    for files in ({"config.json": "a", "config.json/x": "b"},
                  {"a/b/c.safetensors": "a", "a/b": "b", "config.json": "c"}):
        with pytest.raises(InvalidRequest, match="both a file and the folder"):
            uploaded_folder(files, blob_path)
    assert set(uploaded_folder({"a/b": "x", "ab": "y", "a/c": "z"}, blob_path)) == \
        {"a/b", "ab", "a/c"}


def test_a_second_projector_from_is_refused(runtime, tiny_gguf: Path, tmp_path: Path) -> None:
    # two projector FROMs were both stored, but only the first is ever loaded: the
    # second was silently unused (and the same one twice counted twice in the size)
    first = write_tiny_projector(tmp_path / "mmproj.gguf")
    second = write_tiny_projector(tmp_path / "mmproj-b.gguf", seed=5)
    before = runtime.store.blobs.digests()
    for extra in (second, first):
        with pytest.raises(InvalidRequest, match="one vision projector"):
            create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {first}\nFROM {extra}\n",
                   tmp_path)
    assert runtime.store.blobs.digests() == before
    assert "seer:latest" not in [e.name.display for e in runtime.list()]


def test_cli_show_prints_capabilities_and_the_projector(runtime, tiny_gguf: Path,
                                                        tmp_path: Path, capsys) -> None:
    # `locallama show` of a vision model said nothing of vision (ollama show lists
    # Capabilities and the Projector)
    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {projector}\n", tmp_path)
    models_cmd._print_details(runtime.show("seer"))
    shown = capsys.readouterr().out
    assert "Capabilities\n    completion\n    vision" in shown
    assert "Projector\n    architecture        clip" in shown
    assert "dimensions          64" in shown
    models_cmd._print_details(runtime.show("tiny"))
    plain = capsys.readouterr().out
    assert "vision" not in plain and "Projector" not in plain


def test_run_with_a_prompt_attaches_the_image_paths_in_it(runtime, tiny_gguf: Path,
                                                          tmp_path: Path, capsys) -> None:
    # `locallama run MODEL "what is in ./cat.png"` (Ollama's own example) sent the path
    # as text: only the REPL attached images
    from locallama.cli.answer import answer_once

    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {projector}\n", tmp_path)
    picture = tmp_path / "cat.png"
    picture.write_bytes(PNG)
    sent = []
    generate = runtime.generate

    def spy(request):
        sent.append(request)
        return generate(request)

    runtime.generate = spy
    answer_once(runtime, "seer", f"what is in {picture}", verbose=False)
    assert f"Added image '{picture}'" in capsys.readouterr().err
    assert sent[-1].prompt.strip() == "what is in" and len(sent[-1].images) == 1
    answer_once(runtime, "tiny", f"what is in {picture}", verbose=False)  # no vision
    assert sent[-1].prompt == f"what is in {picture}" and not sent[-1].images


def test_a_webp_image_is_seen(runtime, tiny_gguf: Path, tmp_path: Path) -> None:
    import base64
    import io

    image = pytest.importorskip("PIL.Image")
    from locallama.runtime.types import GenerateRequest

    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {projector}\n", tmp_path)
    webp = io.BytesIO()
    image.new("RGB", (30, 30), (200, 10, 10)).save(webp, "WEBP")
    request = GenerateRequest(model="seer", prompt="what", images=[
        base64.b64encode(webp.getvalue()).decode()], options={"num_predict": 2})
    chunks = list(runtime.generate(request))
    assert chunks[-1].done
    # converted to PNG for mtmd: the same picture as PNG gives the same greedy answer
    png = io.BytesIO()
    image.open(io.BytesIO(webp.getvalue())).convert("RGB").save(png, "PNG")
    greedy = {"num_predict": 6, "temperature": 0}
    as_webp = "".join(c.text for c in runtime.generate(GenerateRequest(
        model="seer", prompt="what", options=greedy,
        images=[base64.b64encode(webp.getvalue()).decode()])))
    as_png = "".join(c.text for c in runtime.generate(GenerateRequest(
        model="seer", prompt="what", options=greedy,
        images=[base64.b64encode(png.getvalue()).decode()])))
    assert as_webp == as_png
    broken = base64.b64encode(webp.getvalue()[:40]).decode()
    with pytest.raises(InvalidRequest, match="WebP"):
        list(runtime.generate(GenerateRequest(model="seer", prompt="what", images=[broken])))


def test_a_model_whose_projector_blob_is_missing_is_broken_not_a_traceback(
        runtime, tiny_gguf: Path, tmp_path: Path) -> None:
    # running it raised FileNotFoundError from the loader's os.path.getsize (a raw
    # traceback on the CLI, a 500 on the server) though `list` called it BROKEN
    from locallama.errors import BadModelFile
    from locallama.runtime.types import GenerateRequest
    from locallama.store import manifests as mf
    from locallama.store import parse_name

    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {projector}\n", tmp_path)
    record = runtime.store.get(parse_name("seer"))
    digest = record.manifest.first(mf.MEDIA_PROJECTOR).digest
    runtime.store.blobs.path(digest).unlink()
    with pytest.raises(BadModelFile, match="projector blob .* is missing"):
        list(runtime.generate(GenerateRequest(model="seer", prompt="hi",
                                              options={"num_predict": 1})))
    with pytest.raises(BadModelFile, match="locallama rm seer"):
        runtime.show("seer")
    runtime.delete("seer")
    assert "seer:latest" not in [e.name.display for e in runtime.list()]
