"""Progress on stderr: off by default, one bar per attack, nested work draws one bar."""

import torch

from robustlayers.attacks import FGSM, ThreatModel
from robustlayers.evaluate import evaluate_model
from robustlayers.evaluate.progress import note, progress_enabled, show_progress, task

from .toys import Linear

X, Y = torch.rand(10, 1, 2, 2), torch.randint(0, 3, (10,))


def test_off_by_default_and_on_inside_show_progress(capsys):
    attacks = {"fgsm": FGSM(ThreatModel("linf", 0.1)), "fgsm-2": FGSM(ThreatModel("linf", 0.2))}
    evaluate_model(Linear(d=4, k=3), X, Y, attacks, batch_size=4)
    assert capsys.readouterr().err == "" and not progress_enabled()
    evaluate_model(Linear(d=4, k=3), X, Y, attacks, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "attack fgsm: 100%" in err and "attack fgsm-2: 100%" in err and "3/3" in err
    with show_progress():
        assert progress_enabled()
        with show_progress(False):
            evaluate_model(Linear(d=4, k=3), X, Y, attacks)
            note("hidden")
        note("shown")
    assert capsys.readouterr().err == "shown\n"


def test_only_the_outermost_bar_draws(capsys):
    with show_progress():
        with task(2, "outer", unit="repeat") as outer:
            for _ in range(2):
                with task(5, "inner") as inner:
                    inner.update(5)
                outer.update(1)
    err = capsys.readouterr().err
    assert "outer: 100%" in err and "2/2" in err and "inner" not in err
