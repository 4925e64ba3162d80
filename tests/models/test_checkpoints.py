"""load_checkpoint / save_weights: formats, wrappers, prefixes, mismatch reports, refusal of pickles."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from robustlayers.models import CheckpointError, LoadReport, create_model, load_checkpoint, save_weights


def _model(seed=0, **kw):
    kw.setdefault("in_channels", 1)
    kw.setdefault("input_size", 28)
    return create_model("smallcnn", seed=seed, **kw)


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def src():
    model = _model(seed=1)
    with torch.no_grad():  # make running stats non-trivial too
        model.train()(torch.rand(4, 1, 28, 28))
    return model


def test_safetensors_round_trip(tmp_path, src):
    path = save_weights(src, tmp_path / "w.safetensors")
    assert path.exists() and os.listdir(tmp_path) == ["w.safetensors"]  # no temp file left
    dst = _model(seed=2)
    assert not _same(src, dst)
    report = load_checkpoint(dst, path)
    assert isinstance(report, LoadReport)
    assert _same(src, dst)
    assert report.source_format == "safetensors" and report.ok
    assert report.missing == () and report.unexpected == () and report.mismatched == ()
    assert set(report.loaded) == set(src.state_dict())


def test_save_weights_overwrites_atomically_and_any_suffix_is_sniffed(tmp_path, src):
    path = tmp_path / "sub" / "weights.bin"
    save_weights(_model(seed=3), path)
    save_weights(src, path)  # replace the existing file
    assert sorted(os.listdir(path.parent)) == ["weights.bin"]
    dst = _model(seed=2)
    assert load_checkpoint(dst, path).source_format == "safetensors"
    assert _same(src, dst)


def _fail_directory_fsync(monkeypatch, err):
    """Make os.fsync raise ``err`` on directories only (file fsyncs still succeed)."""
    import stat

    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_save_weights_reports_a_failed_directory_fsync(tmp_path, src, monkeypatch):
    """The rename is only durable once the directory is fsync'ed: an I/O error there must not
    be swallowed (it was: every OSError of the directory fsync used to be ignored)."""
    import errno

    _fail_directory_fsync(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as info:
        save_weights(src, tmp_path / "w.safetensors")
    assert info.value.errno == errno.EIO


def test_save_weights_tolerates_filesystems_without_directory_fsync(tmp_path, src, monkeypatch):
    import errno

    _fail_directory_fsync(monkeypatch, errno.EINVAL)
    path = save_weights(src, tmp_path / "w.safetensors")
    dst = _model(seed=2)
    load_checkpoint(dst, path)
    assert _same(src, dst) and os.listdir(tmp_path) == ["w.safetensors"]


def test_models_and_runs_import_in_either_order_without_a_cycle():
    """models.checkpoints imports runs.atomic at module level; runs must not import models."""
    import subprocess
    import sys

    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print('robustlayers.models' in sys.modules)")
    for first, models_loaded in (("robustlayers.runs", "False"),
                                 ("robustlayers.models", "True"),
                                 ("robustlayers.models.checkpoints", "True")):
        out = subprocess.run([sys.executable, "-c", code, first], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert out == models_loaded, first


def test_torch_state_dict_file(tmp_path, src):
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    dst = _model(seed=2)
    report = load_checkpoint(dst, path)
    assert report.source_format == "torch" and report.wrapper_key is None
    assert _same(src, dst)


def test_module_prefix_is_stripped(tmp_path, src):
    path = tmp_path / "dp.pth"
    torch.save(OrderedDict((f"module.{k}", v) for k, v in src.state_dict().items()), path)
    dst = _model(seed=2)
    report = load_checkpoint(dst, path)
    assert report.stripped_prefixes == ("module.",)
    assert _same(src, dst)


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model", "net"])
def test_wrapped_state_dict(tmp_path, src, wrapper):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 7, "optimizer": {"lr": 0.1}, wrapper: src.state_dict()}, path)
    dst = _model(seed=2)
    report = load_checkpoint(dst, path)
    assert report.wrapper_key == wrapper
    assert _same(src, dst)


def test_wrapper_prefix_and_normalisation_buffers(tmp_path, src):
    sd = {f"model.{k}": v for k, v in src.state_dict().items()}
    sd["model.normalize.mean"] = torch.zeros(1, 1, 1, 1)  # a model that stored its normaliser
    sd["model.normalize.std"] = torch.ones(1, 1, 1, 1)
    path = tmp_path / "wrapped.safetensors"
    save_file(sd, str(path))
    dst = _model(seed=2)
    report = load_checkpoint(dst, path)
    assert report.stripped_prefixes == ("model.",)
    assert set(report.ignored) == {"model.normalize.mean", "model.normalize.std"}
    assert report.ok and _same(src, dst)
    assert dst.normalize.mean.flatten().tolist() == [0.5]  # the model's own statistics stay


def test_missing_num_batches_tracked_is_tolerated(tmp_path, src):
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    report = load_checkpoint(_model(seed=2), path)
    assert report.missing == ()
    assert any(k.endswith("num_batches_tracked") for k in report.ignored)


def test_key_mismatch_report(tmp_path, src):
    sd = dict(src.state_dict())
    sd["head.9.weight"] = torch.zeros(3)          # unexpected
    del sd["layer2.0.weight"]                     # missing
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    dst = _model(seed=2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(dst, path)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "missing keys (1): layer2.0.weight" in msg
    assert "unexpected keys (1): head.9.weight" in msg
    assert str(path) in msg and "strict=False" in msg
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # untouched

    report = load_checkpoint(dst, path, strict=False)
    assert report.missing == ("layer2.0.weight",)
    assert report.unexpected == ("head.9.weight",)
    assert "layer1.0.weight" in report.loaded and "layer2.0.weight" not in report.loaded
    assert torch.equal(dst.layer1[0].weight, src.layer1[0].weight)
    assert not report.ok


def test_long_key_lists_are_truncated(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({f"foo.{i}.weight": torch.zeros(1) for i in range(30)}, str(path))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_model(), path)
    msg = str(err.value)
    assert "unexpected keys (30)" in msg and "... and 20 more" in msg
    assert "missing keys (" in msg


def test_shape_mismatch(tmp_path):
    path = tmp_path / "c3.safetensors"
    save_weights(_model(num_classes=3), path)
    dst = _model(num_classes=10)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(dst, path)
    msg = str(err.value)
    assert "shape mismatches (2)" in msg
    assert "head.3.weight: file [3, 128] vs model [10, 128]" in msg
    report = load_checkpoint(dst, path, strict=False)
    assert ("head.3.weight", (3, 128), (10, 128)) in report.mismatched
    assert "head.3.weight" not in report.loaded and "head.1.weight" in report.loaded


def test_zoo_resnet_round_trip_through_dataparallel_style_file(tmp_path):
    src = create_model("resnet18", seed=0)
    path = tmp_path / "r18.pth"
    torch.save({"net": {f"module.{k}": v for k, v in src.state_dict().items()}, "acc": 0.9}, path)
    dst = create_model("resnet18", seed=1)
    report = load_checkpoint(dst, path)
    assert report.wrapper_key == "net" and report.stripped_prefixes == ("module.",)
    assert len(report.loaded) == 122 and _same(src, dst)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_checkpoint(_model(), missing)


def test_file_without_state_dict(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_checkpoint(_model(), path)


def test_corrupt_files_raise_checkpoint_error(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(_model(), bad)
    bad_st = tmp_path / "junk.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(_model(), bad_st)


# --- malicious pickles ----------------------------------------------------------------------


class _WritesMarker:
    """Unpickling this runs Python code that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class _SystemCall:
    """Unpickling this runs a shell command through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("payload", [_WritesMarker, _SystemCall])
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle", "wrapped"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, payload, container):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    evil = payload(marker)
    if container == "torch_zip":
        torch.save(evil, path)
    elif container == "raw_pickle":
        with open(path, "wb") as fh:
            pickle.dump(evil, fh)
    else:  # a plausible-looking checkpoint with the payload hidden next to the weights
        torch.save({"state_dict": _model().state_dict(), "extra": evil}, path)

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_model(), path)
    assert not marker.exists(), "the payload ran"
    msg = str(err.value)
    assert "refused" in msg and "not a plain state dict" in msg

    # control: the payload is live — unrestricted unpickling *does* run it
    control = tmp_path / "CONTROL"
    control_path = tmp_path / "control.pt"
    torch.save(payload(control), control_path)
    torch.load(control_path, weights_only=False)
    assert control.exists()


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(_model(), path)  # the whole nn.Module, not a state dict
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        load_checkpoint(_model(), path)
