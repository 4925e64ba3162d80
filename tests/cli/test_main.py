"""The dispatcher: one-line errors, exit codes, --json error objects, --debug, --version,
``python -m robustlayers``, Ctrl-C and a closed stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import robustlayers
from robustlayers.cli import main as cli_main
from robustlayers.cli import models_cmd
from robustlayers.cli.main import main
from robustlayers.errors import RunInterrupted

SRC = str(Path(robustlayers.__file__).resolve().parents[1])


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # command-line parse errors exit like argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def python_m(*argv, **kw):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "robustlayers", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_version_in_process_and_as_module(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"robustlayers {robustlayers.__version__}"
    proc = python_m("--version")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b""
    assert out.decode().strip() == f"robustlayers {robustlayers.__version__}"


def test_usage_error_is_exit_2_with_json_object(capsys):
    code, out, err = run_cli(capsys, "models", "--colour", "--json")
    assert code == 2
    assert err.startswith("usage: robustlayers")
    assert "robustlayers models: error: unrecognized arguments: --colour" in err
    record = json.loads(out)
    assert record == {"error": "unrecognized arguments: --colour", "kind": "usage",
                      "exit_code": 2, "command": "models"}


def test_library_error_is_one_line_and_json(capsys):
    code, out, err = run_cli(capsys, "models", "nothing*", "--json")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustlayers models: error: no zoo model")
    record = json.loads(out)
    assert record["kind"] == "ConfigError" and "'nothing*'" in record["error"]
    code, out, err = run_cli(capsys, "models", "nothing*")  # no --json: nothing on stdout
    assert code == 2 and out == ""


def test_failed_work_exits_1_and_internal_errors_say_so(capsys, monkeypatch, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{broken")
    code, out, err = run_cli(capsys, "runs", "show", str(run), "--json")
    assert code == 1 and json.loads(out)["kind"] == "RunStoreError"
    assert f"{run / 'config.json'} is not valid JSON (line 1, column 2" in err

    def broken(args):
        raise TypeError("unsupported operand")
    monkeypatch.setattr(models_cmd, "run", broken)
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 1 and "Traceback" not in err
    assert "internal error (TypeError: unsupported operand)" in err and "--debug" in err
    assert json.loads(out)["kind"] == "internal"


def test_debug_shows_the_traceback_anywhere_on_the_line(capsys):
    for argv in (["--debug", "models", "nothing*"], ["models", "nothing*", "--debug"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2
        assert "Traceback (most recent call last)" in err and "ConfigError" in err
        assert err.splitlines()[-1].startswith(
            "robustlayers models: error: no zoo model matches 'nothing*'; models: ")


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(models_cmd, "run", interrupted)
    code, out, err = run_cli(capsys, "models")
    assert code == 130 and out == ""
    assert err == "robustlayers models: interrupted (Ctrl-C)\n"


def test_run_interrupted_carries_its_exit_code(capsys, monkeypatch):
    def terminated(args):
        raise RunInterrupted("run runs/x interrupted by SIGTERM; resume with robustlayers "
                             "train --resume runs/x", exit_code=143)
    monkeypatch.setattr(models_cmd, "run", terminated)
    code, _, err = run_cli(capsys, "models")
    assert code == 143 and "resume with robustlayers train --resume runs/x" in err


def test_closed_stdout_ends_quietly_in_process(capsys, monkeypatch):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass
    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["models", "--json"])
    assert code == cli_main.EXIT_BROKEN_PIPE == 141
    assert capsys.readouterr().err == ""


def test_closed_pipe_as_a_real_process():
    proc = python_m("models", "--json")
    proc.stdout.close()  # the reader is gone before the command writes: EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 141
    assert err == "", err


def test_warnings_become_one_line(capsys, tmp_path):
    root = tmp_path / "runs"
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "config.json").write_text("[1, 2]")
    code, out, err = run_cli(capsys, "runs", "list", "--root", str(root), "--json")
    assert code == 0 and json.loads(out) == []
    assert err.strip().splitlines() == [
        f"robustlayers runs: warning: skipped run directory {root / 'bad'}: "
        f"{root / 'bad' / 'config.json'} holds the list [1, 2]; a JSON object was expected"]


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_missing_or_unknown_command(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "robustlayers: error:" in err
