"""`robustlayers data`: JSON and text output, errors as exit code 2."""

import gzip
import json
import struct

import numpy as np

from robustlayers.cli.main import main
from robustlayers.data import list_datasets


def test_fashion_mnist_json(capsys):
    assert main(["data", "fashion-mnist", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["dataset"] == "fashion-mnist"
    assert rec["splits"]["train"]["n"] == 60000 and rec["splits"]["test"]["n"] == 10000
    assert rec["splits"]["train"]["source"] == "/usr/share/datasets/fashion-mnist"
    assert rec["shape"] == [1, 28, 28] and rec["num_classes"] == 10
    assert rec["classes"][0] == "T-shirt/top" and len(rec["mean"]) == 1
    assert rec["default_eps"] == {"value": 0.1, "over_255": 25.5}
    assert rec["splits"]["test"]["class_counts"] == [1000] * 10


def test_text_output_default_dataset(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "60000" in out and "10000" in out
    assert "/usr/share/datasets/fashion-mnist" in out and "(1, 28, 28)" in out


def test_bad_dataset_name_exit_2(capsys):
    assert main(["data", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "imagenet" in err
    for name in list_datasets():
        assert name in err


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_data_dir_and_missing(tmp_path, capsys):
    assert main(["data", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "--data-dir" in err
    for prefix, n in (("train", 3), ("t10k", 2)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n))
    assert main(["data", "mnist", "--data-dir", str(tmp_path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["splits"]["train"]["n"] == 3 and rec["splits"]["test"]["n"] == 2
    assert rec["augment"] == "crop" and rec["default_eps"]["value"] == 0.3


def test_cifar10c_listing(tmp_path, capsys):
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    assert main(["data", "cifar10-c", "--data-dir", str(tmp_path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["corruptions"]["fog"] == {"n": 10, "per_severity": 2, "source": str(tmp_path)}
    assert len(rec["missing_corruptions"]) == 18
