"""Ctrl-C stops a study cleanly (exit 130, study.json ``interrupted``, the finished run kept)
and ``robustlayers study --resume`` continues it, reusing what was done."""

import json
import os
import signal
import subprocess
import sys
import time

from robustlayers.cli.main import main
from tests.train.test_run_identity import default_sigint

TINY = ["--epochs", "2", "--train-size", "128", "--test-size", "50", "--eval-size", "50",
        "--subsets", "3;1"]


def _outcomes(path):
    try:
        return json.loads(path.read_text()).get("outcomes", {})
    except (OSError, ValueError):
        return {}


def test_ctrl_c_then_resume(tmp_path):
    out = tmp_path / "study"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "robustlayers", "study", "layer-subsets",
                             "--preset", "demo", "--out", str(out), "--quiet", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    deadline = time.time() + 600
    while not _outcomes(out / "study.json") and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert f"robustlayers study --resume {out}" in err
    saved = json.loads((out / "study.json").read_text())
    assert saved["status"] == "interrupted"
    done = [k for k, o in saved["outcomes"].items() if o["status"] == "done"]
    assert done and len(saved["outcomes"]) < 3
    assert main(["study", "--resume", str(out), "--quiet"]) == 0
    final = json.loads((out / "study.json").read_text())
    assert final["status"] == "finished" and len(final["outcomes"]) == 3
    assert all(final["outcomes"][k]["status"] == "reused" for k in done)


def test_an_interrupted_run_stops_the_study_instead_of_failing(tmp_path, monkeypatch):
    """A run that ends interrupted (RunInterrupted) stops the study like Ctrl-C: no retry, no
    other task started afterwards."""
    import pytest

    from robustlayers import studies
    from robustlayers.errors import RunInterrupted
    from robustlayers.studies.execute import StudyInterrupted

    calls = []

    def interrupted(config):
        calls.append(config["method"])
        raise RunInterrupted("run x interrupted by SIGTERM")

    monkeypatch.setattr("robustlayers.train.train", interrupted)
    with pytest.raises(StudyInterrupted):
        studies.run("layer-subsets", "demo", out=tmp_path / "s", quiet=True,
                    log=lambda *_: None, subsets="3")
    assert calls == ["pgd-at"]
    saved = json.loads((tmp_path / "s" / "study.json").read_text())
    assert saved["status"] == "interrupted" and saved["outcomes"] == {}
