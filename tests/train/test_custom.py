"""train() with a user's own nn.Module and tensors / Dataset: run directory, selections,
resume and diagnosis as for a zoo model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustlayers.train import resume_run, train


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU())
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def _data(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _config(tmp_path, **kw):
    return dict(method="pgd-at", eps=0.1, alpha=0.05, steps=2, epochs=2, batch_size=16,
                eval_steps=2, eval_size=16, device="cpu", quiet=True, runs_root=str(tmp_path),
                freeze="features.1", **kw)


def test_a_user_module_on_user_data_trains_resumes_and_is_diagnosed(tmp_path):
    from robustlayers.analysis import psr

    train_xy, test_xy = _data(64, 1), _data(32, 2)
    model = Tiny()
    run = train(_config(tmp_path), model=model, train_data=TensorDataset(*train_xy),
                test_data=test_xy)
    assert run.status == "finished" and run.config["model"] == "custom:Tiny"
    assert run.config["dataset"].startswith("custom:") and run.config["model_kwargs"] is None
    assert run.selections["freeze"]["names"] == ["features.1"]
    assert run.result["final"]["n"] == 32 and len(run.metrics()) == 2
    # the same config and data again return the run; other data is another run
    again = train(_config(tmp_path), model=Tiny(), train_data=train_xy, test_data=test_xy)
    assert again.path == run.path
    other = train(_config(tmp_path), model=Tiny(), train_data=_data(64, 3), test_data=test_xy)
    assert other.path != run.path
    # extend by one epoch: resume needs the same objects
    with pytest.raises(ValueError, match="pass the same model="):
        resume_run(run.path, epochs=3)
    with pytest.raises(ValueError, match="pass the same train_data="):
        resume_run(run.path, epochs=3, model=model, train_data=_data(64, 9), test_data=test_xy)
    extended = resume_run(run.path, epochs=3, model=model, train_data=train_xy,
                          test_data=test_xy)
    assert [r["epoch"] for r in extended.metrics()] == [1, 2, 3]
    result = psr(model, test_xy[0][:8], test_xy[1][:8], eps=0.1, selection="features.0,fc")
    assert set(result.layers) == {"features.0", "fc"}


def test_user_data_needs_eps_and_images_in_the_unit_range(tmp_path):
    x, y = _data(16, 1)
    with pytest.raises(ValueError, match="needs eps"):
        train({**_config(tmp_path), "eps": None}, model=Tiny(), train_data=(x, y))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        train(_config(tmp_path), model=Tiny(), train_data=(x * 255, y))
    with pytest.raises(ValueError, match="expects a torch.nn.Module"):
        train(_config(tmp_path), model="smallcnn", train_data=(x, y))
