"""Final pre-activation statistics (SPECTRUM §6) against a manual capture."""

import json
import math

import pytest

from robustlayers.analysis import final_activation, preactivation_stats
from robustlayers.layers import capture
from robustlayers.models import create_model

from .toys import TinyCNN, images, labels


def test_mean_matches_manual_capture():
    model = TinyCNN().eval()
    x, y = images(10, (1, 8, 8)), labels(10)
    assert final_activation(model) == "act2"
    stats = preactivation_stats(model, (x, y), batch_size=4, max_samples=100)
    json.dumps(stats)
    z = capture(model, ["act2"], x, what="input")["act2"].double()
    assert stats["module"] == "act2" and stats["where"] == "input"
    assert math.isclose(stats["mean"], float(z.mean()), rel_tol=1e-9)
    assert math.isclose(stats["std"], float(z.std(unbiased=False)), rel_tol=1e-6)
    assert math.isclose(stats["fraction_positive"], float((z > 0).double().mean()))
    per_channel = z.transpose(0, 1).flatten(1).mean(1).tolist()
    assert stats["per_channel_mean"] == pytest.approx(per_channel, rel=1e-5)
    assert stats["n_values"] == z.numel() and stats["n_images"] == 10
    assert 100 <= stats["n_sampled"] <= 110                       # ~max_samples subsample
    assert sum(stats["histogram"]["counts"]) == stats["n_sampled"]
    assert stats["quantiles"]["q5"] <= stats["quantiles"]["q50"] <= stats["quantiles"]["q95"]


def test_explicit_module_and_zoo_defaults():
    model = TinyCNN()
    stats = preactivation_stats(model, (images(3, (1, 8, 8)), labels(3)), module="act1")
    assert stats["module"] == "act1"
    assert final_activation(create_model("smallcnn", in_channels=1, input_size=28)) == "layer2.5"
    assert final_activation(create_model("resnet18", input_size=8)) == "layer4.1.act"
    assert final_activation(create_model("preact_resnet18", input_size=8)) == "act"
