"""corruption_accuracy on a small CIFAR-10-C-layout folder written by the test (SPEC §6, §8)."""
import json

import numpy as np
import pytest

from robustlayers.evaluate import corruption_accuracy

from .toys import Brightness

# number of correctly classified images (out of 4) per severity 1..5
CORRECT = {"gaussian_noise": [4, 3, 2, 1, 0], "fog": [4, 4, 2, 2, 0]}


@pytest.fixture
def cifar10c(tmp_path):
    """Label 1 for every image; a bright image (255) is classified 1 (correct), a dark one 0."""
    np.save(tmp_path / "labels.npy", np.ones(20, dtype=np.int64))
    for name, counts in CORRECT.items():
        images = np.zeros((20, 32, 32, 3), dtype=np.uint8)
        for s, k in enumerate(counts):
            images[4 * s: 4 * s + k] = 255
        np.save(tmp_path / f"{name}.npy", images)
    return tmp_path


def test_per_cell_and_averages(cifar10c):
    res = corruption_accuracy(Brightness(), cifar10c, corruptions=list(CORRECT))
    json.dumps(res)
    for name, counts in CORRECT.items():
        for s, k in enumerate(counts, start=1):
            assert res["per_corruption_severity"][name][str(s)]["accuracy"] == k / 4
            assert res["per_corruption_severity"][name][str(s)]["n"] == 4
        assert res["per_corruption"][name] == pytest.approx(sum(counts) / 20)
    assert res["per_severity"]["1"] == 1.0 and res["per_severity"]["5"] == 0.0
    assert res["per_severity"]["3"] == pytest.approx(0.5)
    assert res["mean"] == pytest.approx((10 + 12) / 40)
    assert res["severities"] == [1, 2, 3, 4, 5] and res["n_per_cell"] == 4


def test_subset_of_severities_and_examples(cifar10c):
    res = corruption_accuracy(Brightness(), cifar10c, corruptions=["fog"], severities=(3, 4),
                              n_examples=2)
    assert res["per_corruption_severity"]["fog"] == {
        "3": pytest.approx({"accuracy": 1.0, "loss": res["per_corruption_severity"]["fog"]["3"]
                            ["loss"], "n": 2}),
        "4": pytest.approx({"accuracy": 1.0, "loss": res["per_corruption_severity"]["fog"]["4"]
                            ["loss"], "n": 2})}
    assert res["n_per_cell"] == 2


def test_errors(cifar10c):
    with pytest.raises(ValueError, match="severity"):
        corruption_accuracy(Brightness(), cifar10c, corruptions=["fog"], severities=(0,))
    with pytest.raises(ValueError, match="only 4"):
        corruption_accuracy(Brightness(), cifar10c, corruptions=["fog"], n_examples=5)
    with pytest.raises(ValueError, match="frost"):  # missing file -> DataError(ValueError)
        corruption_accuracy(Brightness(), cifar10c, corruptions=["frost"])
