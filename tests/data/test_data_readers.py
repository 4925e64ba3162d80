"""Readers on small files written in the publishers' exact formats; pixel layout; bad files."""

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from robustlayers.data import (DataError, load_corruption, load_dataset, read_cifar_batch,
                               read_idx, read_svhn_mat, safe_unpickle)

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, fmt, gz):
    imgs = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = fmt.write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), imgs, gz=gz)
    raw = path.read_bytes() if not gz else gzip.decompress(path.read_bytes())
    assert raw[:4] == bytes([0, 0, 8, 3])  # magic 2051
    np.testing.assert_array_equal(read_idx(path, expect_magic=2051), imgs)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_layout_and_parent_dir(tmp_path, fmt, gz):
    imgs = np.zeros((3, 28, 28), np.uint8)
    imgs[1, 5, 7] = 255
    imgs[2, 27, 0] = 51
    labels = np.array([4, 0, 9], np.uint8)
    # data_dir is the parent; the files sit in its mnist/ folder
    fmt.write_idx_split(tmp_path / "mnist", "test", imgs, labels, gz=gz)
    data = load_dataset("mnist", "test", data_dir=tmp_path)
    assert data.x.shape == (3, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64 and data.y.tolist() == [4, 0, 9]
    assert data.x[1, 0, 5, 7] == 1.0 and data.x[2, 0, 27, 0] == pytest.approx(0.2)
    assert data.x.sum() == pytest.approx(1.2)
    assert data.source == str(tmp_path / "mnist") and data.split == "test"
    # pointing at the folder itself works too
    assert len(load_dataset("mnist", "test", data_dir=tmp_path / "mnist")) == 3


def test_idx_wrong_magic(tmp_path, fmt):
    labels = fmt.write_idx(tmp_path / "l.gz", np.arange(4, dtype=np.uint8))
    with pytest.raises(DataError, match=str(tmp_path / "l.gz")):
        read_idx(labels, expect_magic=2051)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)


def test_idx_truncated_raw_and_gz(tmp_path, fmt):
    path = fmt.write_idx(tmp_path / "x", RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8),
                         gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"{path}.*truncated"):
        read_idx(path)
    gz = fmt.write_idx(tmp_path / "y.gz", RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(DataError, match=str(gz)):
        read_idx(gz)


def test_idx_label_count_mismatch(tmp_path, fmt):
    fmt.write_idx_split(tmp_path, "train", np.zeros((3, 28, 28), np.uint8),
                        np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path, fmt):
    fmt.write_idx_split(tmp_path, "test", np.zeros((2, 28, 28), np.uint8),
                        np.array([1, 10], np.uint8))
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_dataset("mnist", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------- CIFAR

def test_cifar10_pickles_pixel_layout(tmp_path, fmt):
    written = fmt.write_cifar10(tmp_path / "cifar-10-batches-py", n=4)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")
    assert train.x.shape == (20, 3, 32, 32) and len(test) == 4
    expect = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal((train.x * 255).round().to(torch.uint8).numpy(), expect)
    assert train.y.tolist() == [int(v) for i in range(1, 6)
                                for v in written[f"data_batch_{i}"][1]]


def test_cifar_row_major_planes(tmp_path, fmt):
    # one known pixel: green channel (plane 1), row 3, column 17 of image 1
    data = np.zeros((2, 3072), np.uint8)
    data[1, 1 * 1024 + 3 * 32 + 17] = 200
    for proto in (2, 4, 5):
        path = fmt.write_cifar_batch(tmp_path / f"b{proto}", data, [1, 2], protocol=proto)
        x, y = read_cifar_batch(path)
        assert x.shape == (2, 3, 32, 32) and y.tolist() == [1, 2]
        assert x[1, 1, 3, 17] == 200 and x.sum() == 200
    py2 = tmp_path / "py2"
    py2.write_bytes(fmt.py2_cifar_pickle(data, [1, 2]))
    x, _ = read_cifar_batch(py2)
    assert x[1, 1, 3, 17] == 200 and x.sum() == 200


def test_cifar100_fine_labels(tmp_path, fmt):
    folder = tmp_path / "cifar-100-python"
    for split, labels in (("train", [99, 0, 42]), ("test", [7])):
        imgs = RNG.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        obj = {b"data": imgs, b"fine_labels": labels, b"coarse_labels": [0] * len(labels)}
        folder.mkdir(exist_ok=True)
        (folder / split).write_bytes(pickle.dumps(obj, protocol=2))
    train = load_dataset("cifar100", data_dir=tmp_path)
    assert train.y.tolist() == [99, 0, 42] and train.info.num_classes == 100
    assert len(load_dataset("cifar100", "test", data_dir=folder)) == 1


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refusing to load global (posix|os|nt)\\.system") as err:
        safe_unpickle(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    evil = tmp_path / "eval"
    evil.write_bytes(b"cbuiltins\neval\n(V__import__('os')\ntR.")
    with pytest.raises(DataError, match="builtins.eval"):
        read_cifar_batch(evil)


def test_cifar_corrupt_and_missing(tmp_path, fmt):
    path = fmt.write_cifar_batch(tmp_path / "test_batch",
                                 np.zeros((2, 3072), np.uint8), [0, 1])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=f"{path}.*corrupt or truncated"):
        read_cifar_batch(path)
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        read_cifar_batch(tmp_path / "nope")
    wrong = fmt.write_cifar_batch(tmp_path / "w", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        read_cifar_batch(wrong)


# --------------------------------------------------------------------------- SVHN

def test_svhn_mat_layout_and_zero_label(tmp_path, fmt):
    imgs = np.zeros((3, 3, 32, 32), np.uint8)
    imgs[2, 0, 31, 4] = 77  # red, last row, column 4 of image 2
    imgs[0, 2, 0, 0] = 1
    fmt.write_svhn(tmp_path / "train_32x32.mat", imgs, np.array([0, 5, 9]))
    x, y = read_svhn_mat(tmp_path / "train_32x32.mat")
    assert y.tolist() == [0, 5, 9]
    np.testing.assert_array_equal(x, imgs)
    data = load_dataset("svhn", "train", data_dir=tmp_path)
    assert data.x[2, 0, 31, 4] == pytest.approx(77 / 255) and data.y.tolist() == [0, 5, 9]


def test_svhn_corrupt_mat(tmp_path):
    bad = tmp_path / "test_32x32.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 50)
    with pytest.raises(DataError, match=str(bad)):
        read_svhn_mat(bad)


# --------------------------------------------------------------------------- CIFAR-10-C

def test_cifar10c_severity_blocks_and_layout(tmp_path, fmt):
    arrays, labels = fmt.write_cifar10c(tmp_path / "CIFAR-10-C", per_severity=3)
    arr = arrays["gaussian_noise"]
    data = load_corruption(tmp_path, "gaussian_noise", 3)
    assert data.x.shape == (3, 3, 32, 32) and data.y.tolist() == labels[6:9].tolist()
    # (N, H, W, C) → (N, C, H, W): pixel (h=2, w=30, c=1) of image 7
    assert data.x[1, 1, 2, 30] == pytest.approx(arr[7, 2, 30, 1] / 255)
    np.testing.assert_array_equal((data.x * 255).round().byte().numpy(),
                                  arr[6:9].transpose(0, 3, 1, 2))
    assert len(load_corruption(tmp_path / "CIFAR-10-C", "gaussian_noise", None)) == 15


def test_cifar10c_errors(tmp_path, fmt):
    fmt.write_cifar10c(tmp_path, per_severity=2)
    with pytest.raises(DataError, match="severity"):
        load_corruption(tmp_path, "gaussian_noise", 6)
    with pytest.raises(DataError, match="valid choices: gaussian_noise"):
        load_corruption(tmp_path, "rain", 1)
    with pytest.raises(DataError, match=f"{tmp_path}.*shot_noise.npy"):
        load_corruption(tmp_path, "shot_noise", 1)
    with pytest.raises(DataError, match="load_corruption"):
        load_dataset("cifar10-c", "test", data_dir=tmp_path)
    path = tmp_path / "gaussian_noise.npy"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=str(path)):
        load_corruption(tmp_path, "gaussian_noise", 1)
    np.save(tmp_path / "gaussian_noise.npy", np.array([{"a": 1}] * 10, dtype=object))
    with pytest.raises(DataError, match=str(path)):  # object arrays need pickle: refused
        load_corruption(tmp_path, "gaussian_noise", 1)


# --------------------------------------------------------------------------- missing / real data

def test_missing_data_names_paths_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert "cifar-10-python.tar.gz" in msg and "data_batch_1" in msg
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(DataError, match="valid choices: train, test"):
        load_dataset("mnist", "validation", data_dir=tmp_path)


def test_real_fashion_mnist():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape[1:] == (1, 28, 28) and train.x.dtype == torch.float32
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    assert train.y.dtype == torch.int64
    assert torch.bincount(test.y).tolist() == [1000] * 10
    assert float(train.x.mean()) == pytest.approx(train.info.mean[0], abs=1e-3)
    assert float(train.x.std()) == pytest.approx(train.info.std[0], abs=1e-3)
    assert train.source == "/usr/share/datasets/fashion-mnist"
