import pytest
import torch

from robustlayers.layers import FeatureCapture, SelectionError, capture, resolve_module

from .toys import Scaled, Shuffled


def test_capture_matches_manual_forward():
    model = Shuffled().eval()
    x = torch.rand(3, 1, 4, 4)
    feats = capture(model, "stem | body.1 | fc", x)
    assert list(feats) == ["stem", "body.1", "fc"]
    stem = model.stem(x)
    torch.testing.assert_close(feats["stem"], stem)
    torch.testing.assert_close(feats["body.1"], model.body[1](model.body[0](stem)))
    torch.testing.assert_close(feats["fc"], model(x))


def test_capture_known_activations():
    feats = capture(Scaled(), "kind:conv", torch.ones(2, 1, 3, 3))
    assert torch.all(feats["a"] == 2.0) and torch.all(feats["b"] == 6.0)


def test_capture_input_of_activation_module():
    model = Shuffled().eval()
    x = torch.rand(2, 1, 4, 4)
    feats = capture(model, ["act"], x, what="input")
    stem = model.stem(x)
    torch.testing.assert_close(feats["act"], model.body(stem) + model.skip(stem))


def test_hooks_removed_even_after_an_error():
    model = Shuffled()
    with pytest.raises(RuntimeError):
        with FeatureCapture(model, "kind:conv"):
            model(torch.rand(1, 1, 5, 5))  # wrong size: the linear layer fails
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_feature_capture_keeps_graph_unless_detached():
    model = Scaled()
    x = torch.ones(1, 1, 3, 3, requires_grad=True)
    with FeatureCapture(model, "b") as cap:
        model(x)
    cap.features["b"].sum().backward()
    assert torch.all(x.grad == 6.0)
    assert not capture(model, "b", x)["b"].requires_grad


def test_unknown_module_and_bad_what():
    model = Shuffled()
    with pytest.raises(SelectionError, match="closest: act"):
        resolve_module(model, "actt")
    with pytest.raises(ValueError, match="output, input"):
        FeatureCapture(model, "stem", what="grad")
