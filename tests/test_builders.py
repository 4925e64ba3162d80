import pytest
import torch

from robustlayers.builders import build_model, model_kwargs_for
from robustlayers.data import get_dataset_info, list_datasets


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10", "cifar100", "svhn", "mnist"])
def test_model_fits_the_dataset(dataset):
    info = get_dataset_info(dataset)
    model = build_model(info.default_model, dataset).eval()
    assert model.input_shape == info.shape
    with torch.no_grad():
        out = model(torch.rand(2, *info.shape))
    assert out.shape == (2, info.num_classes)
    torch.testing.assert_close(model.normalize.mean.flatten(), torch.tensor(info.mean))


def test_kwargs_are_json_and_rebuild_the_same_architecture():
    import json

    kwargs = model_kwargs_for("cifar10", activation="swish")
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["activation"] == "swish" and kwargs["input_size"] == 32


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="fashion-mnist"):
        model_kwargs_for("imagenet")
    assert "fashion-mnist" in list_datasets()


def test_seed_makes_the_initialisation_deterministic_without_touching_the_global_rng():
    state = torch.get_rng_state()
    a = build_model("smallcnn", "fashion-mnist", seed=3)
    b = build_model("smallcnn", "fashion-mnist", seed=3)
    c = build_model("smallcnn", "fashion-mnist", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_activation_reaches_the_model():
    swish = build_model("smallcnn", "fashion-mnist", activation="swish", seed=0)
    kinds = {type(m) for m in swish.modules()}
    assert torch.nn.SiLU in kinds and torch.nn.ReLU not in kinds
    assert swish.zoo_config["activation"] == "swish"


# --- input normalisation of checkpoints ----------------------------------------------------

def _raw_trained(tmp_path, seed=1):
    """A 'community' checkpoint: a CIFAR model trained on raw [0, 1] inputs, saved as a plain
    state dict (no normalisation information)."""
    model = build_model("smallcnn", "cifar10", normalize="none", seed=seed).eval()
    path = tmp_path / "raw.pt"
    torch.save(model.state_dict(), path)
    return model, path


def _agreement(a, b, x) -> float:
    with torch.no_grad():
        return (a(x).argmax(1) == b(x).argmax(1)).float().mean().item()


def test_raw_input_checkpoint_needs_normalize_none(tmp_path, capsys):
    original, path = _raw_trained(tmp_path)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    right = build_model("smallcnn", "cifar10", checkpoint=path, normalize="none").eval()
    assert capsys.readouterr().err == ""                      # the user chose: no note
    with torch.no_grad():
        torch.testing.assert_close(right(x), original(x))
    assert right.normalization == {"convention": "none", "source": "user",
                                   "mean": [0.0] * 3, "std": [1.0] * 3}
    assumed = build_model("smallcnn", "cifar10", checkpoint=path).eval()
    note = capsys.readouterr().err
    assert "stores no input normalisation" in note and "--normalize none" in note
    assert "normalize='none'" in note and "cifar10" in note
    assert assumed.normalization["source"] == "assumed"
    assert assumed.normalization["mean"] == [round(v, 6) for v in get_dataset_info("cifar10").mean]
    with torch.no_grad():
        assert not torch.allclose(assumed(x), original(x))
    assert _agreement(right, original, x) == 1.0


def test_checkpoint_normalisation_buffers_are_used(tmp_path, capsys):
    src = build_model("smallcnn", "cifar10", normalize="0.1,0.2,0.3/0.5,0.6,0.7", seed=2).eval()
    sd = {f"module.model.{k}": v for k, v in src.state_dict().items()}
    sd["module.normalizer.new_mean"] = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    sd["module.normalizer.new_std"] = torch.tensor([0.5, 0.6, 0.7]).view(3, 1, 1)
    path = tmp_path / "robustness-style.pt"
    torch.save({"model": sd, "epoch": 3}, path)
    loaded = build_model("smallcnn", "cifar10", checkpoint=path).eval()
    assert capsys.readouterr().err == ""
    assert loaded.normalization["convention"] == "checkpoint"
    assert loaded.normalization["stored_as"] == ["module.normalizer.new_mean",
                                                 "module.normalizer.new_std"]
    assert loaded.zoo_config["std"] == pytest.approx([0.5, 0.6, 0.7])
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))
    # an explicit choice wins, and says that it overrides what the file stores
    build_model("smallcnn", "cifar10", checkpoint=path, normalize="dataset")
    assert "the given normalisation (dataset) is used instead" in capsys.readouterr().err


def test_save_weights_records_normalisation_in_the_metadata(tmp_path, capsys):
    from robustlayers.models import save_weights

    src = build_model("smallcnn", "fashion-mnist", normalize="0.5/0.25", seed=0)
    save_weights(src, tmp_path / "w.safetensors")
    loaded = build_model("smallcnn", "fashion-mnist", checkpoint=tmp_path / "w.safetensors")
    assert capsys.readouterr().err == ""
    assert loaded.normalization == {"convention": "checkpoint", "source": "checkpoint",
                                    "stored_as": "metadata", "mean": [0.5], "std": [0.25]}


@pytest.mark.parametrize("value, match", [
    ("zscore", "valid choices: dataset .*none .*MEAN/STD"),
    ("0.1,0.2/0.3,0.4,0.5,0.6", "mean has 2 values but cifar10 images have 3"),
    ("0.5/0", "std must be > 0"),
    ("a/b", "not a comma-separated list"),
])
def test_bad_normalize_values_fail_before_building(value, match):
    with pytest.raises(ValueError, match=match):
        build_model("smallcnn", "cifar10", normalize=value)


def test_a_fresh_model_is_tagged_with_its_dataset():
    model = build_model("smallcnn", "fashion-mnist")
    assert model.data_context == {"dataset": "fashion-mnist", "eps": 0.1, "norm": "linf",
                                  "source": "dataset"}
    assert model.normalization["convention"] == "dataset"
    assert build_model("smallcnn", "cifar10", normalize=([0.5], [0.5])).normalization[
        "mean"] == [0.5] * 3


def test_loading_a_big_checkpoint_shows_progress(tmp_path, capsys, monkeypatch):
    import robustlayers.builders as builders
    from robustlayers.evaluate.progress import show_progress
    from robustlayers.models import save_weights

    path = save_weights(build_model("smallcnn", "fashion-mnist"), tmp_path / "w.safetensors")
    monkeypatch.setattr(builders, "BIG_CHECKPOINT_BYTES", 1)      # every file counts as big
    build_model("smallcnn", "fashion-mnist", checkpoint=path)
    assert capsys.readouterr().err == ""                           # progress is off by default
    with show_progress():
        build_model("smallcnn", "fashion-mnist", checkpoint=path)
    err = capsys.readouterr().err
    assert f"loading smallcnn weights from {path}" in err and "loaded 28 tensors in" in err
