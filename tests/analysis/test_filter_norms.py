"""Convolution-filter norms (SPECTRUM §5) against hand computations."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from robustlayers.analysis import filter_norms, filter_norms_family, kernel_norms


class TwoConvs(nn.Module):
    input_shape = (2, 4, 4)

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 2, bias=False)
        self.b = nn.Conv2d(2, 1, 1, bias=False)
        self.c = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(9, 2)
        with torch.no_grad():
            # kernels (out, in): (0,0) max|w|=4, (0,1)=1, (1,0)=0.5, (1,1)=3
            self.a.weight.copy_(torch.tensor([[[[1., -4.], [2., 0.]], [[1., 1.], [-1., 0.]]],
                                              [[[.5, .5], [-.5, 0.]], [[0., 3.], [0., 0.]]]]))
            self.b.weight.copy_(torch.tensor([[[[2.]], [[-6.]]]]))
            self.c.weight.fill_(0.25)

    def forward(self, x):
        return self.fc(self.c(self.b(self.a(x))).flatten(1))


def test_linf_mean_and_max_by_hand():
    out = filter_norms(TwoConvs())
    assert out.layers == ("a", "b", "c")
    np.testing.assert_allclose(out.mean, [(4 + 1 + 0.5 + 3) / 4, (2 + 6) / 2, 0.25])
    np.testing.assert_allclose(out.max, [4.0, 6.0, 0.25])
    assert out.n_kernels == (4, 2, 1) and out.kernel_size == ((2, 2), (1, 1), (1, 1))
    assert out.ranking() == ["b", "a", "c"]
    assert math.isclose(out.first_two_ratio(), ((8.5 / 4 + 4) / 2) / 0.25)
    record = out.to_dict()
    json.dumps(record)
    assert record["ranking_by_mean"] == ["b", "a", "c"]
    assert record["selection"]["names"] == ["a", "b", "c"]


def test_l2_option_by_hand():
    out = filter_norms(TwoConvs(), norm="2", selection="a")
    expected = [math.sqrt(1 + 16 + 4), math.sqrt(1 + 1 + 1), math.sqrt(0.75), 3.0]
    np.testing.assert_allclose(out.mean, [np.mean(expected)])
    np.testing.assert_allclose(out.max, [max(expected)])


def test_kernel_norms_shape_and_errors():
    w = torch.randn(5, 3, 3, 3)
    assert kernel_norms(w).shape == (15,)
    with pytest.raises(ValueError, match="valid norms"):
        kernel_norms(w, "1")
    with pytest.raises(ValueError, match="conv weight"):
        kernel_norms(torch.randn(3, 3))
    with pytest.raises(ValueError, match="kind:conv"):
        filter_norms(TwoConvs(), selection="a | fc")


def test_family_keys_and_lines():
    m2 = TwoConvs()
    with torch.no_grad():
        m2.c.weight.fill_(-2.0)
    fam = filter_norms_family({"x": TwoConvs(), "y": m2}).to_dict()
    json.dumps(fam)
    assert list(fam["models"]) == ["x", "y"]
    assert fam["models"]["y"]["mean"][2] == 2.0


def test_shortcut_projections_are_left_out_unless_asked_for():
    # SPECTRUM's filter-norm figures show the main-path convs of ResNet-18, not the three 1×1
    # shortcut projections
    from robustlayers.models import create_model

    model = create_model("resnet18", input_size=8, seed=0)
    shortcuts = ["layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"]
    out = filter_norms(model)
    assert len(out.layers) == 17 and not set(shortcuts) & set(out.layers)
    assert out.layers[:2] == ("conv1", "layer1.0.conv1")
    assert all(size == (3, 3) for size in out.kernel_size)
    record = out.to_dict()
    assert (record["include_shortcuts"], record["shortcuts_left_out"]) == (False, shortcuts)
    assert record["selection"]["names"] == list(out.layers)
    full = filter_norms(model, include_shortcuts=True)
    assert len(full.layers) == 20 and set(shortcuts) <= set(full.layers)
    assert full.to_dict()["shortcuts_left_out"] == []
    assert full.kernel_size[full.layers.index("layer2.0.shortcut.0")] == (1, 1)
    # the same rule on an explicit selection, and an error when only shortcuts remain
    block2 = filter_norms(model, selection="block:2 & kind:conv")
    assert block2.layers == ("layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1",
                             "layer2.1.conv2")
    with pytest.raises(ValueError, match="only shortcut projections.*include_shortcuts=True"):
        filter_norms(model, selection="layer2.0.shortcut.0")
    fam = filter_norms_family({"a": model}, include_shortcuts=True).to_dict()
    assert fam["models"]["a"]["include_shortcuts"] is True
