"""TensorBoard and MLflow loggers write what a reader reads back."""

import json
import sys

import pytest

from robustlayers import tracking
from robustlayers.tracking import TrackingError, make_trackers

CONFIG = {"model": "smallcnn", "eps": 0.1, "method": {"name": "pgd-at", "steps": 10}}
ROWS = [{"epoch": 1, "train_loss": 1.5, "test": {"clean_acc": 0.6, "robust_acc": 0.3}},
        {"epoch": 2, "train_loss": 1.1, "test": {"clean_acc": 0.7, "robust_acc": 0.4},
         "note": "text is skipped", "best": True}]
RESULT = {"clean_acc": 0.7, "robust_acc_best": 0.4, "robust_acc_last": 0.38, "best_epoch": 2}


def _log_all(trackers, tmp_path):
    artifact = tmp_path / "report.html"
    artifact.write_text("<html></html>")
    trackers.start(CONFIG)
    for row in ROWS:
        trackers.log_epoch(row, step=row["epoch"])
    trackers.finish(RESULT, [artifact])
    trackers.close()


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = make_trackers("tensorboard", run_dir=tmp_path)
    _log_all(trackers, tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"train_loss", "test/clean_acc", "test/robust_acc", "final/robust_acc_best"} <= \
        set(scalars)
    assert "note" not in scalars and "best" not in scalars
    robust = [(e.step, round(e.value, 6)) for e in acc.Scalars("test/robust_acc")]
    assert robust == [(1, 0.3), (2, 0.4)]
    assert acc.Scalars("final/robust_acc_last")[0].value == pytest.approx(0.38)
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"pgd-at"' in config_text


def test_mlflow_local_store_read_back(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run-a"
    trackers = make_trackers(["mlflow"], run_dir=run_dir)
    _log_all(trackers, tmp_path)
    [tracker] = trackers
    client = MlflowClient(tracking_uri=tracker.uri)
    assert tracker.uri.startswith("sqlite:///") and str(run_dir / "mlflow") in tracker.uri
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-a"
    assert run.data.params["method.name"] == "pgd-at" and run.data.params["eps"] == "0.1"
    history = client.get_metric_history(tracker.run_id, "test/robust_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.3), (2, 0.4)]
    assert run.data.metrics["final/robust_acc_best"] == pytest.approx(0.4)
    files = {f.path for f in client.list_artifacts(tracker.run_id)}
    assert {"config.json", "result.json", "report.html"} <= files
    local = client.download_artifacts(tracker.run_id, "config.json", str(tmp_path))
    assert json.loads(open(local).read()) == CONFIG
    assert (run_dir / "mlflow" / "artifacts").is_dir()
    # an explicit tracking URI; a run closed without finish() (interrupted) is KILLED
    other = make_trackers("mlflow", run_dir=tmp_path / "run-b", uri=tracker.uri)
    other.start(CONFIG)
    other.log_epoch(ROWS[0], step=1)
    other.close()
    killed = client.get_run(other[0].run_id)
    assert killed.info.status == "KILLED" and killed.info.run_name == "run-b"
    assert not (tmp_path / "run-b" / "mlflow").exists()


def test_unknown_tracker_lists_choices(tmp_path):
    with pytest.raises(TrackingError, match="valid choices: tensorboard, mlflow"):
        make_trackers("tensorboard,wandb", run_dir=tmp_path)
    assert list(make_trackers("", run_dir=tmp_path)) == []
    assert tracking.parse_tracker_names("MLflow, tensorboard,mlflow") == ["mlflow",
                                                                          "tensorboard"]


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)     # import mlflow -> ImportError
    with pytest.raises(TrackingError, match=r"pip install 'robustlayers\[mlflow\]'"):
        make_trackers("tensorboard,mlflow", run_dir=tmp_path)
    assert not (tmp_path / "tensorboard").exists()       # checked before anything is created
