"""Digests remembered in the cache: computed once per version of the files, computed again when a
file changes (even with its size and modification time put back), when a link in a weights folder
is renamed, when the remembered text is not a digest, and still returned when the cache cannot be
written."""

import hashlib
import os

import pytest

from idsuite.runners.models.cache import digest_folder, file_sha256, remembered
from idsuite.runners.models.weights import _hash_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IDSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IDSUITE_DIGESTS")  # the default place: the cache's digests folder
    assert digest_folder() == tmp_path / "cache" / "digests"
    return tmp_path / "cache"


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_a_digest_is_computed_once_per_version_of_the_files(cache, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x01" * 1000)
    compute, calls = counting("ab" * 8)
    assert remembered("kind", [weights], compute) == "ab" * 8
    assert remembered("kind", [weights], compute) == "ab" * 8 and len(calls) == 1
    other, other_calls = counting("cd" * 8)
    assert remembered("another kind", [weights], other) == "cd" * 8 and len(other_calls) == 1


def test_a_rewritten_file_is_read_again_even_with_size_and_mtime_put_back(cache, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x01" * 1000)
    before = file_sha256(weights)
    assert before == hashlib.sha256(b"\x01" * 1000).hexdigest()
    stat = weights.stat()
    with weights.open("r+b") as fh:  # same size, one byte changed, modification time restored
        fh.write(b"\x02")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_mtime_ns == stat.st_mtime_ns and weights.stat().st_size == stat.st_size
    assert file_sha256(weights) == hashlib.sha256(b"\x02" + b"\x01" * 999).hexdigest() != before


def test_renaming_a_link_in_a_weights_folder_changes_its_digest(cache, tmp_path):
    """The folder digest covers the files' names; a link renamed keeps its target's stat."""
    blob = tmp_path / "blobs" / "0123"
    blob.parent.mkdir()
    blob.write_bytes(b"\x01" * 100)
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "a.safetensors").symlink_to(blob)
    before = _hash_folder(folder)
    (folder / "a.safetensors").rename(folder / "b.safetensors")
    after = _hash_folder(folder)
    expected = hashlib.sha256(b"b.safetensors" + b"\x01" * 100).hexdigest()[:16]
    assert after == expected != before


def test_a_remembered_text_that_is_not_a_digest_is_computed_again(cache, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    file_sha256(weights)
    (remembered_file,) = (cache / "digests").iterdir()
    remembered_file.write_text("not a digest")
    assert file_sha256(weights) == hashlib.sha256(b"w").hexdigest()
    assert remembered_file.read_text() == hashlib.sha256(b"w").hexdigest()


def test_a_cache_that_cannot_be_written_still_gives_the_digest(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("IDSUITE_DIGESTS", str(blocker / "digests"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    compute, calls = counting(hashlib.sha256(b"w").hexdigest())
    assert remembered("sha256", [weights], compute) == hashlib.sha256(b"w").hexdigest()
    assert remembered("sha256", [weights], compute) == hashlib.sha256(b"w").hexdigest() and len(calls) == 2
