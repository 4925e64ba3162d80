"""`import robustlayers` exposes the main entry points at the top level, lazily."""

import subprocess
import sys

import pytest
import torch

import robustlayers as rl


def test_import_is_lazy():
    code = "import robustlayers, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("name", ["create_model", "build_model", "layer_map", "select", "train",
                                  "evaluate", "evaluate_model", "diagnose", "psr", "criticality",
                                  "PGD", "FGSM", "ThreatModel", "make_attack", "preset",
                                  "load_run_model", "make_trackers"])
def test_entry_points_exist(name):
    assert callable(getattr(rl, name))
    assert name in rl.__all__ and name in dir(rl)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'evalute'"):
        rl.evalute


def test_train_and_evaluate_are_callable_packages():
    import robustlayers.evaluate
    import robustlayers.train

    assert rl.evaluate is robustlayers.evaluate and rl.train is robustlayers.train
    assert rl.evaluate.evaluate_model is rl.evaluate_model      # still the package
    model = rl.build_model("smallcnn", "fashion-mnist", seed=0).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    threat = rl.ThreatModel("linf", 0.1)
    result = rl.evaluate(model, x, y, {"fgsm": rl.FGSM(threat)})
    assert result.n == 4 and set(result.attacks) == {"fgsm"}
    assert rl.layer_map(model).names[0] == rl.select(model, "index:0").names[0]
