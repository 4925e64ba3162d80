"""``robustlayers evaluate`` end to end on a smallcnn checkpoint and a Fashion-MNIST subset."""
import json

import pytest
import torch

from robustlayers.builders import build_model
from robustlayers.cli.main import main
from robustlayers.models import save_weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("smallcnn", "fashion-mnist")
    path = tmp_path_factory.mktemp("ckpt") / "smallcnn.safetensors"
    save_weights(model, path)
    return str(path)


BASE = ["evaluate", "--model", "smallcnn", "--dataset", "fashion-mnist", "--n-examples", "32",
        "--steps", "2", "--batch-size", "32"]


def test_json_record(checkpoint, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    rc = main(BASE + ["--checkpoint", checkpoint, "--attack", "fgsm,pgd", "--eps", "8/255",
                      "--json", "--out", str(out)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.loads(out.read_text())
    assert printed["attacks"].keys() == record["attacks"].keys() == {"fgsm", "pgd-2"}
    assert record["n"] == 32 and record["seed"] == 0 and record["dataset"] == "fashion-mnist"
    assert record["threat"] == {"norm": "linf", "eps": {"value": pytest.approx(8 / 255),
                                                        "over_255": 8.0}}
    pgd = record["attacks"]["pgd-2"]
    assert pgd["config"]["steps"] == 2 and pgd["config"]["eps_over_255"] == 8.0
    assert 0 <= pgd["accuracy"] <= record["clean"]["accuracy"] + 0.2
    assert pgd["loss"] > 0 and pgd["seconds"] >= 0
    assert {"accuracy", "loss", "n"} <= record["clean"].keys()
    assert record["worst_case"]["accuracy"] <= min(a["accuracy"] for a in
                                                   record["attacks"].values())
    names = {c["name"] for c in record["sanity"]["checks"]}
    assert {"eps_monotone", "large_eps", "more_steps", "more_restarts", "fgsm_vs_pgd",
            "zero_gradients", "randomness", "train_mode"} <= names
    assert record["sanity"]["attack_checks"] is True
    env = record["environment"]
    assert {"robustlayers", "torch", "numpy", "code_version"} <= env.keys()
    assert record["model"] == {"name": "smallcnn", "checkpoint": checkpoint, "normalization": {
        "convention": "checkpoint", "source": "checkpoint", "stored_as": "metadata",
        "mean": [0.286], "std": [0.353]}}


def test_human_table_and_no_sanity(checkpoint, capsys):
    rc = main(BASE + ["--checkpoint", checkpoint, "--no-sanity", "--attack", "pgd",
                      "--attack", "fgsm-rs"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "clean" in text and "pgd-2" in text and "fgsm-rs" in text and "worst case" in text
    assert "ε=0.1 (25.5/255)" in text  # the dataset's default budget
    assert "attack checks skipped" in text


def test_run_dir_path(checkpoint, monkeypatch, tmp_path, capsys):
    import robustlayers.runs as runs
    from robustlayers.builders import build_model

    def fake_load(run_dir, which="best"):
        assert which == "last"
        model = build_model("smallcnn", "fashion-mnist", checkpoint=checkpoint)
        return model.eval(), {"model": "smallcnn", "dataset": "fashion-mnist", "norm": "linf",
                              "eps": 0.05}

    monkeypatch.setattr(runs, "load_run_model", fake_load)
    rc = main(["evaluate", "--run", str(tmp_path), "--which", "last", "--n-examples", "16",
               "--steps", "1", "--no-sanity", "--json"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["threat"]["eps"]["value"] == 0.05
    assert {k: record["model"][k] for k in ("run", "which", "name")} == {
        "run": str(tmp_path), "which": "last", "name": "smallcnn"}
    assert record["model"]["normalization"]["mean"] == [0.286]


@pytest.mark.parametrize("extra, match", [
    (["--eps", "-1"], "eps"),
    (["--eps", "8"], "8/255"),
    (["--attack", "nope"], "unknown attack"),
    (["--steps", "0"], "--steps"),
    (["--alpha", "0"], "--alpha"),
    (["--norm", "l2"], "needs --eps"),
    (["--which", "best"], "--which goes with --run"),
])
def test_bad_arguments_exit_2(checkpoint, capsys, extra, match):
    assert main(BASE + ["--checkpoint", checkpoint, "--no-sanity"] + extra) == 2
    assert match in capsys.readouterr().err


def test_missing_checkpoint_and_exclusive_sources(tmp_path, capsys):
    assert main(BASE + ["--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(BASE) == 2
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--run", "x", "--model", "smallcnn"])


def test_model_is_built_with_builders_build_model(checkpoint, monkeypatch, capsys):
    """--model/--checkpoint goes through robustlayers.builders.build_model (the one place models
    meet datasets), not a hand-assembled create_model call."""
    import robustlayers.builders as builders

    calls = []
    real = builders.build_model

    def spy(name, dataset, **kw):
        calls.append((name, dataset, kw))
        return real(name, dataset, **kw)

    monkeypatch.setattr(builders, "build_model", spy)
    assert main(BASE + ["--checkpoint", checkpoint, "--no-sanity", "--json"]) == 0
    assert calls == [("smallcnn", "fashion-mnist", {"checkpoint": checkpoint,
                                                    "normalize": None})]
    assert json.loads(capsys.readouterr().out)["model"]["checkpoint"] == checkpoint


def test_resolve_device(monkeypatch):
    from robustlayers.cli.common import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'; choose one of auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available; valid choices here: cpu, auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")


def test_device_option(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = BASE + ["--checkpoint", checkpoint, "--no-sanity"]
    assert main(args + ["--json", "--device", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"
    assert main(args + ["--device", "cuda"]) == 2
    assert "CUDA is not available; valid choices here: cpu, auto" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--device", "tpu"])
    assert "choose from 'auto', 'cpu', 'cuda'" in capsys.readouterr().err


def test_strict_exit_code(checkpoint, monkeypatch, capsys):
    import robustlayers.evaluate as ev
    from robustlayers.evaluate import SanityCheck

    real = ev.run_sanity_checks

    def failing(*a, **kw):
        return real(*a, **kw) + [SanityCheck("forced", False, "forced failure", "none")]

    monkeypatch.setattr(ev, "run_sanity_checks", failing)
    args = BASE + ["--checkpoint", checkpoint, "--no-sanity", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["sanity"]["failed"] == ["forced"]
    assert main(args + ["--strict"]) == 1
    assert "forced" in capsys.readouterr().err


def test_normalize_choice_is_recorded_and_quiet_silences_progress(checkpoint, capsys):
    argv = BASE + ["--checkpoint", checkpoint, "--no-sanity", "--json", "--attack", "fgsm,pgd"]
    assert main(argv + ["--normalize", "none"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["model"]["normalization"] == {"convention": "none", "source": "user",
                                                "mean": [0.0], "std": [1.0]}
    assert "stores mean (0.286) / std (0.353); the given normalisation (none)" in captured.err
    assert "attack fgsm" in captured.err and "attack pgd-2" in captured.err   # progress bars
    assert main(argv + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(BASE + ["--checkpoint", checkpoint, "--normalize", "1/2/3"]) == 2
    assert "valid choices: dataset" in capsys.readouterr().err
