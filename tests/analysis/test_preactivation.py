"""Final pre-activation statistics (SPECTRUM §6) against a manual capture."""

import json
import math

import numpy as np
import pytest
import torch

from robustlayers.analysis import (
    diagnose, final_activation, preactivation_corruptions, preactivation_stats,
    probe_final_activation,
)
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


class Declared(TinyCNN):
    final_activation = "act1"        # what the model says; probing would find act2


def _count_forwards(model):
    calls = []
    model.register_forward_pre_hook(lambda _m, _args: calls.append(1))
    return calls


def test_declared_final_activation_is_used_without_probing():
    model = Declared()
    calls = _count_forwards(model)
    assert final_activation(model) == "act1" and calls == []
    assert probe_final_activation(model) == "act2" and calls == [1]     # foreign-model path
    stats = preactivation_stats(model, (images(3, (1, 8, 8)), labels(3)), batch_size=8)
    assert stats["module"] == "act1"
    zoo = create_model("resnet18", input_size=8)
    calls = _count_forwards(zoo)
    assert final_activation(zoo) == zoo.final_activation == "layer4.1.act" and calls == []
    assert probe_final_activation(zoo) == "layer4.1.act"                # they agree


class RGB(TinyCNN):
    input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(6 * 32 * 32, 3)


def test_cifar10c_means(tmp_path):
    rng = np.random.default_rng(0)
    images_c = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)   # 5 severities x 2
    np.save(tmp_path / "gaussian_noise.npy", images_c)
    np.save(tmp_path / "labels.npy", np.arange(10) % 3)
    model = RGB().eval()
    out = preactivation_corruptions(model, tmp_path, corruptions=["gaussian_noise"],
                                    severities=(1, 3))
    json.dumps(out)
    assert [(r["corruption"], r["severity"]) for r in out["rows"]] == [("gaussian_noise", 1),
                                                                      ("gaussian_noise", 3)]
    x = torch.from_numpy(images_c[[0, 1, 4, 5]]).permute(0, 3, 1, 2).float() / 255
    z = capture(model, ["act2"], x, what="input")["act2"].double()
    assert out["module"] == "act2"
    assert math.isclose(out["mean"], float(z.mean()), rel_tol=1e-6)
    assert math.isclose(out["rows"][1]["mean"], float(z[2:].mean()), rel_tol=1e-6)
    diag = diagnose({"rgb": model}, (x, torch.zeros(4, dtype=torch.long)), analyses="preact",
                    corruption_dir=tmp_path, corruptions=["gaussian_noise"],
                    out_dir=tmp_path / "out")
    entry = diag["analyses"]["preactivation"]["models"]["rgb"]
    # SPECTRUM's default: severity 5 only (images 8, 9)
    assert [r["severity"] for r in entry["corruptions"]["rows"]] == [5]
    assert entry["corruptions"]["severities"] == [5]
    assert "severity 5 only" in entry["corruptions"]["severity_rule"]
    x5 = torch.from_numpy(images_c[8:]).permute(0, 3, 1, 2).float() / 255
    z5 = capture(model, ["act2"], x5, what="input")["act2"].double()
    assert math.isclose(entry["corruptions"]["mean"], float(z5.mean()), rel_tol=1e-6)
    assert out["severities"] == [1, 3] and out["severity_rule"] == "chosen severities"
    with pytest.raises(ValueError, match="severity 6 is not valid; choose from 1, 2, 3, 4, 5"):
        preactivation_corruptions(model, tmp_path, corruptions=["gaussian_noise"],
                                  severities=(5, 6))
    assert any("CIFAR-10-C" in s for s in diag["summary"])
    assert "<h3>CIFAR-10-C</h3>" in (tmp_path / "out" / "report.html").read_text()
