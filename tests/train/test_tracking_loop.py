"""``--log tensorboard,mlflow`` in a real training run: what the trackers wrote is read back."""

from __future__ import annotations

import pytest

from robustlayers.train import train

from .conftest import tiny_config


def test_a_run_logs_every_epoch_and_its_result_to_tensorboard_and_mlflow(mini_data, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tiny_config(mini_data, tmp_path / "logged", epochs=2,
                            log="tensorboard,mlflow"))
    rows = run.metrics()
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("test_robust_acc")]
    assert logged == [(r["epoch"], pytest.approx(r["test_robust_acc"])) for r in rows]
    client = MlflowClient(tracking_uri=f"sqlite:///{run.path / 'mlflow' / 'mlflow.db'}")
    [found] = client.search_runs(client.search_experiments()[0].experiment_id)
    assert found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "train_loss")
    assert [(m.step, pytest.approx(m.value)) for m in history] == \
        [(r["epoch"], r["train_loss"]) for r in rows]
    assert found.data.params["method"] == "pgd-at"
    assert run.config["log"] == ["tensorboard", "mlflow"]


def test_an_unknown_tracker_is_refused_before_any_work(mini_data, tmp_path):
    with pytest.raises(ValueError, match="log: unknown tracker 'wandb'.*tensorboard, mlflow"):
        train(tiny_config(mini_data, tmp_path / "x", log="wandb"))
    assert not (tmp_path / "x").exists()
