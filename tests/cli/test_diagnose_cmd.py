"""``robustlayers diagnose`` end to end on two smallcnn checkpoints (tiny settings)."""

import json
from html.parser import HTMLParser

import pytest
import torch

from robustlayers.builders import model_kwargs_for
from robustlayers.cli.main import main
from robustlayers.models import create_model, save_weights
from robustlayers.runs import RunDir

FAST = ["--dataset", "fashion-mnist", "--n-examples", "12", "--psr-steps", "1",
        "--crit-steps", "1", "--quant-steps", "1", "--stability-repeats", "2",
        "--stability-batch", "4", "--betas", "4,8", "--epoch-batches", "0",
        "--batch-size", "32"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("smallcnn", **model_kwargs_for("fashion-mnist"))
        path = root / f"smallcnn-{seed}.safetensors"
        save_weights(model, path)
        paths.append(str(path))
    return paths


def _run_dir(path, input_size=28):
    kwargs = dict(model_kwargs_for("fashion-mnist"), input_size=input_size)
    run = RunDir.create(path, {"model": "smallcnn", "model_kwargs": kwargs,
                               "dataset": "fashion-mnist"})
    run.save_checkpoint("best", create_model("smallcnn", **kwargs), {"epoch": 0})
    return str(path)


def test_two_checkpoints_json(checkpoints, tmp_path, capsys):
    out = tmp_path / "diag"
    rc = main(["diagnose", "--model", "smallcnn", "--checkpoint", checkpoints[0],
               "--compare", checkpoints[1], "--label", "natural", "--label", "pgd-at",
               "--out", str(out), "--json", "--eps", "8/255", "16/255", *FAST])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"] == ["natural", "pgd-at"]
    assert printed["report"] == str(out / "report.html")
    record = json.loads((out / "diagnosis.json").read_text())
    assert record["data"] == {"dataset": "fashion-mnist", "split": "test", "n_examples": 12,
                              "subset_of": 10000, "subset_seed": 0}
    assert record["models_info"]["natural"]["source"] == checkpoints[0]
    quant = record["analyses"]["quantization"]["models"]["pgd-at"]
    assert [e["key"] for e in quant["eps_grid"]] == ["8/255", "16/255"]
    assert [p["spec"] for p in quant["placements"]] == ["conv0", "layer1", "layer2"]
    assert record["analyses"]["criticality"]["models"]["natural"]["timing"] is None
    assert record["eps"]["over_255"] == 8.0
    assert record["analyses"]["psr"]["models"]["natural"]["attack"]["steps"] == 1
    parser = HTMLParser()
    parser.feed((out / "report.html").read_text())


def test_run_dirs_text_output_and_timing(tmp_path, capsys):
    a = _run_dir(tmp_path / "runs" / "nat")
    b = _run_dir(tmp_path / "runs" / "adv")
    for epoch, robust in ((1, 0.2), (2, 0.3)):
        RunDir.open(b).append_metrics({"epoch": epoch, "train_loss": 1.0, "best": epoch == 2,
                                       "test_robust_acc": robust, "test_clean_acc": 0.7})
    evaluation = tmp_path / "eval-nat.json"
    evaluation.write_text(json.dumps({"clean": {"accuracy": 0.9, "loss": 0.3}, "attacks": {
        "pgd-20": {"accuracy": 0.1, "loss": 3.0, "config": {"name": "pgd", "steps": 20}}}}))
    out = tmp_path / "diag"
    args = FAST[2:]                                # no --dataset: taken from the run config
    args[args.index("--epoch-batches") + 1] = "1"
    rc = main(["diagnose", "--run", a, "--compare", b, "--analyses", "criticality",
               "--top-k", "2", "--out", str(out), "--evaluation", str(evaluation), *args])
    assert rc == 0
    err = capsys.readouterr()
    assert "diagnose: criticality [1/1]" in err.err            # progress on stderr
    lines = err.out.strip().splitlines()
    assert lines[-1] == str(out / "report.html")
    assert any("most critical layers" in line for line in lines)
    record = json.loads((out / "diagnosis.json").read_text())
    crit = record["analyses"]["criticality"]["models"]
    assert list(crit) == ["nat", "adv"]
    assert len(crit["adv"]["criticality"]["top_k"]) == 2
    timing = crit["nat"]["timing"]
    assert timing["epoch"]["epoch_size"] == 60000 and timing["epoch"]["extrapolated"]
    assert [r["test_robust_acc"] for r in record["training"]["adv"]] == [0.2, 0.3]
    assert record["training"]["nat"] == [] and list(record["evaluation"]) == ["nat"]
    page = (out / "report.html").read_text()
    assert "<th>pgd-20</th>" in page and "10.00% (3.000)" in page and "30.00%" in page


@pytest.mark.parametrize("extra, message", [
    (["--analyses", "psr,lipschitz"], "valid analyses: psr, criticality"),
    (["--select", "layer9"], "layer1"),
    (["--label", "a", "--label", "b", "--label", "c"], "one label per model"),
    (["--n-examples", "0"], "--n-examples must be >= 1"),
    (["--betas", "4,x"], "comma-separated"),
    (["--betas", ""], "--betas '' names no β"),
    (["--betas", "4,6"], "--default-beta 8 is not in --betas [4.0, 6.0]"),
    (["--betas", "4,6", "--default-beta", "5"], "--default-beta 5 is not in --betas"),
    (["--top-k", "0"], "--top-k must be >= 1"),
])
def test_errors_exit_2(checkpoints, tmp_path, capsys, extra, message):
    rc = main(["diagnose", "--model", "smallcnn", "--checkpoint", checkpoints[0],
               "--compare", checkpoints[1], "--out", str(tmp_path / "d"), *FAST, *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_incompatible_models_and_missing_pieces(tmp_path, checkpoints, capsys):
    a = _run_dir(tmp_path / "a")
    b = _run_dir(tmp_path / "b", input_size=32)
    assert main(["diagnose", "--run", a, "--compare", b, "--out", str(tmp_path / "d"),
                 *FAST]) == 2
    assert "incompatible models" in capsys.readouterr().err
    assert main(["diagnose", "--checkpoint", checkpoints[0], *FAST]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["diagnose", "--run", str(tmp_path / "nope"), *FAST]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_compare_runs_of_another_dataset_is_an_error(tmp_path, capsys):
    a = _run_dir(tmp_path / "fmnist")
    b = RunDir.create(tmp_path / "mnist", {"model": "smallcnn", "dataset": "mnist",
                                           "model_kwargs": model_kwargs_for("mnist")})
    b.save_checkpoint("best", create_model("smallcnn", **model_kwargs_for("mnist")),
                      {"epoch": 0})
    args = FAST[2:]                                # no --dataset: the first run's
    assert main(["diagnose", "--run", a, "--compare", str(b.path), "--out",
                 str(tmp_path / "d"), *args]) == 2
    err = capsys.readouterr().err
    assert "trained on 'mnist' but the analysis uses 'fashion-mnist'" in err
    assert main(["diagnose", "--run", a, "--dataset", "mnist", "--out", str(tmp_path / "d"),
                 *args]) == 2
    assert "was trained on 'fashion-mnist' but the analysis uses 'mnist' (from --dataset)" \
        in capsys.readouterr().err
