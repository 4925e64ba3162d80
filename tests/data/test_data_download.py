"""Downloads: only on request, atomic, clean failure when offline (unreachable URL)."""

import dataclasses
import io
import tarfile
import urllib.request

import numpy as np
import pytest

from robustlayers.data import DataError, download_dataset, get_dataset_info, load_dataset
from robustlayers.data import registry

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: connection refused at once


def _point(monkeypatch, name, url):
    info = dataclasses.replace(get_dataset_info(name), url=url, mirrors=())
    monkeypatch.setitem(registry._REGISTRY, name, info)


def test_no_download_unless_asked(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("network used without download=True")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_unreachable_url_clean_error_nothing_left(tmp_path, monkeypatch, name):
    _point(monkeypatch, name, UNREACHABLE + ("x.tar.gz" if name == "cifar10" else ""))
    target = tmp_path / "new" / "data"
    with pytest.raises(DataError) as err:
        load_dataset(name, data_dir=target, download=True)
    msg = str(err.value)
    assert "not found" in msg and "download failed" in msg and "127.0.0.1" in msg
    assert not (tmp_path / "new").exists()
    # an existing folder is kept, but nothing is written into it
    target.mkdir(parents=True)
    with pytest.raises(DataError):
        download_dataset(name, target, url=UNREACHABLE, timeout=2)
    assert list(target.iterdir()) == []


def test_download_per_file_from_file_url(tmp_path, fmt, monkeypatch):
    source = tmp_path / "publisher"
    imgs = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    fmt.write_idx_split(source, "test", imgs, np.array([3, 1], np.uint8))
    _point(monkeypatch, "mnist", source.as_uri() + "/")
    dest = tmp_path / "dest"
    data = load_dataset("mnist", "test", data_dir=dest, download=True)
    assert data.y.tolist() == [3, 1] and data.source == str(dest / "mnist")
    assert sorted(p.name for p in (dest / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_archive_from_file_url(tmp_path, fmt):
    build = tmp_path / "build"
    fmt.write_cifar10(build / "cifar-10-batches-py", n=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    dest = tmp_path / "dest"
    folder = download_dataset("cifar10", dest, url=archive.as_uri())
    assert folder == dest / "cifar-10-batches-py"
    assert [p.name for p in dest.iterdir()] == ["cifar-10-batches-py"]  # no temp files left
    assert len(load_dataset("cifar10", data_dir=dest)) == 10


def test_corrupt_archive_leaves_nothing(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar file at all")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="corrupt"):
        download_dataset("cifar10", dest, url=archive.as_uri())
    assert not dest.exists()


def test_archive_with_unsafe_member_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        payload = b"x"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    dest = tmp_path / "d" / "e"
    with pytest.raises(DataError):
        download_dataset("cifar10", dest, url=archive.as_uri())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "d").exists()
