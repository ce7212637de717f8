"""store/blobs.py: content-addressed blobs, written atomically, verified."""

import os
from pathlib import Path

import pytest

from locallama.errors import DigestMismatch, InvalidRequest
from locallama.store import Store
from locallama.store import blobs as blobs_module
from locallama.store.blobs import BlobStore, atomic_write_bytes, digest_bytes, normalize_digest

HEX = "ab" * 32


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_blob_with_the_wrong_digest_never_enters_the_store(tmp_path):
    store = Store(tmp_path)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        store.blobs.add_stream([b"some ", b"bytes"], expected=wrong)
    assert list((tmp_path / "blobs").iterdir()) == []


def test_invalid_digest_is_an_invalid_request(tmp_path):
    with pytest.raises(InvalidRequest):
        Store(tmp_path).blobs.path("md5:abc")




def test_partial_blob_is_removed_when_the_stream_fails(tmp_path):
    store = Store(tmp_path)

    def broken():
        yield b"half"
        raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        store.blobs.add_stream(broken())
    assert list(Path(tmp_path, "blobs").iterdir()) == []


# -- digests and paths -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [f"sha256:{HEX}", f"sha256-{HEX}", f"  sha256:{HEX}\n"])
def test_both_spellings_of_a_digest_name_one_file(blobs, spelling):
    assert normalize_digest(spelling) == f"sha256:{HEX}"
    assert blobs.path(spelling) == blobs.root / f"sha256-{HEX}"


@pytest.mark.parametrize("digest", [
    f"sha256:{HEX.upper()}", f"sha256:{HEX[:-1]}", f"sha256:{HEX}0", "sha256:../../etc/passwd",
    f"sha512:{HEX}", f"sha256:{HEX}/../x", "",
])
def test_a_digest_that_is_not_one_never_becomes_a_path(blobs, digest):
    with pytest.raises(InvalidRequest, match="expected sha256:<64 hex digits>"):
        blobs.path(digest)


# -- writing -----------------------------------------------------------------------------


def test_a_blob_lands_under_the_digest_of_its_bytes(blobs):
    digest, size = blobs.add_stream(iter([b"some ", b"bytes"]))
    assert (digest, size) == (digest_bytes(b"some bytes"), 10)
    assert blobs.read_bytes(digest) == b"some bytes" and blobs.size(digest) == 10
    assert files(blobs.root) == [digest.replace(":", "-")]  # no temporary file left


def test_the_announced_digest_may_use_either_spelling(blobs):
    expected = digest_bytes(b"data").replace(":", "-")
    assert blobs.add_stream([b"data"], expected=expected) == (digest_bytes(b"data"), 4)


def test_adding_the_same_bytes_again_keeps_the_one_file(blobs):
    digest, _ = blobs.add_bytes(b"same")
    before = blobs.path(digest).stat().st_mtime_ns
    assert blobs.add_bytes(b"same") == (digest, 4)
    assert blobs.add_stream([b"sa", b"me"]) == (digest, 4)
    assert blobs.path(digest).stat().st_mtime_ns == before
    assert files(blobs.root) == [digest.replace(":", "-")]


def test_a_file_is_copied_in_and_read_like_a_stream(blobs, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(os.urandom(3 * blobs_module.CHUNK + 5))  # several chunks
    digest, size = blobs.add_file(source)
    assert digest == digest_bytes(source.read_bytes()) and size == source.stat().st_size
    assert blobs.read_bytes(digest) == source.read_bytes()


def test_a_short_write_is_carried_on_until_every_byte_is_written(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    path = tmp_path / "manifest"
    atomic_write_bytes(path, b"written three bytes at a time")
    assert path.read_bytes() == b"written three bytes at a time"


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary_one(tmp_path):
    path = tmp_path / "latest"
    path.write_bytes(b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and files(tmp_path) == ["latest"]


# -- reading back ------------------------------------------------------------------------


def test_verify_tells_a_blob_whose_bytes_changed(blobs):
    digest, _ = blobs.add_bytes(b"the real bytes")
    assert blobs.verify(digest)
    blobs.path(digest).write_bytes(b"other bytes")  # a disk fault, or a hand edit
    assert not blobs.verify(digest)


def test_digests_lists_blobs_only(blobs):
    assert blobs.digests() == set()  # no folder yet
    digest, _ = blobs.add_bytes(b"one")
    (blobs.root / f"sha256-{HEX}-partial").write_bytes(b"resumable download")
    (blobs.root / ".blob-1234.partial").write_bytes(b"upload in progress")
    (blobs.root / f"sha256-{HEX}").mkdir()  # a folder is not a blob
    (blobs.root / "notes.txt").write_text("hello")
    assert blobs.digests() == {digest}


def test_removing_a_blob_twice_is_fine(blobs):
    digest, _ = blobs.add_bytes(b"gone")
    blobs.remove(digest)
    blobs.remove(digest)
    assert not blobs.has(digest) and files(blobs.root) == []
