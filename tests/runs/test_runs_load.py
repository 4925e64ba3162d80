"""load_run_model: rebuild the model named in config.json and load a checkpoint's weights."""

import pytest
import torch
from torch import nn

import robustlayers.models
from robustlayers.models import create_model
from robustlayers.runs import RunDir, epoch_tag, load_run_model


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(3, width)

    def forward(self, x):
        return self.fc(x)


@pytest.fixture
def fake_zoo(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        return Tiny(**kwargs)

    monkeypatch.setattr(robustlayers.models, "create_model", create_model)
    return calls


def make_run(tmp_path, config=None):
    config = config or {"model": "tiny", "model_kwargs": {"width": 5}, "seed": 0}
    run = RunDir.create(tmp_path / "run", config)
    models = {}
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        models[epoch] = Tiny(5)
        run.save_checkpoint(epoch_tag(epoch), models[epoch], {"epoch": epoch})
    run.save_checkpoint("best", models[1], {"epoch": 1})
    return run, models


def test_best_last_and_epoch(tmp_path, fake_zoo):
    run, models = make_run(tmp_path)
    for which, epoch in (("best", 1), ("last", 2), ("epoch-0001", 1), (2, 2)):
        model, config = load_run_model(run.path, which)
        assert not model.training
        assert torch.equal(model.fc.weight, models[epoch].fc.weight), which
    assert config["model_kwargs"] == {"width": 5}
    assert fake_zoo[0] == ("tiny", {"width": 5})


def test_last_skips_a_corrupt_newest(tmp_path, fake_zoo):
    run, models = make_run(tmp_path)
    (run.checkpoint_root / "epoch-0002" / "model.safetensors").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="epoch-0002"):
        model, _ = load_run_model(run, "last")
    assert torch.equal(model.fc.weight, models[1].fc.weight)


def test_unknown_checkpoint_lists_available(tmp_path, fake_zoo):
    run, _ = make_run(tmp_path)
    with pytest.raises(ValueError, match="epoch-0001, epoch-0002, best"):
        load_run_model(run.path, "epoch-0009")
    with pytest.raises(ValueError, match="choose 'last', 'best'"):
        load_run_model(run.path, "../best")


def test_config_without_model_kwargs(tmp_path, fake_zoo):
    run, _ = make_run(tmp_path, {"model": "tiny"})
    with pytest.raises(ValueError, match="model_kwargs"):
        load_run_model(run.path)


def test_smallcnn_from_the_zoo(tmp_path):
    kwargs = {"in_channels": 1, "input_size": 28, "num_classes": 10}
    torch.manual_seed(0)
    trained = create_model("smallcnn", **kwargs)
    run = RunDir.create(tmp_path / "r", {"model": "smallcnn", "model_kwargs": kwargs})
    run.save_checkpoint("best", trained, {"epoch": 1})
    model, _ = load_run_model(run.path)
    x = torch.rand(2, 1, 28, 28)
    trained.eval()
    assert torch.equal(model(x), trained(x))
