"""Signs of life (issue #23): stage lines, bars only on a terminal, estimators' verbose levels."""

import numpy as np
import pytest

from repens_sklearn import EnSiamPretrainer, FineTuneClassifier, _progress

X = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
y = np.arange(64) % 2


@pytest.fixture
def log_output(monkeypatch):
    """stderr is a log (not a terminal), and every update may write its line."""
    monkeypatch.setattr(_progress, "interactive", lambda stream=None: False)
    monkeypatch.setattr(_progress, "LINE_INTERVAL", 0.0)


def test_plain_lines_count_steps_and_estimate_the_rest(log_output, capsys):
    bar = _progress.progress_bar(4, "training", unit="step", initial=1)
    bar.update()
    bar.set_postfix_str("loss 0.5000")
    bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("training: 2/4 step (50 %), 0 s elapsed, about 0 s left")
    assert lines[1].endswith(", loss 0.5000") and lines[1].startswith("training: 3/4 step (75 %)")


def test_bar_interval_none_is_silent(log_output, capsys):
    bar = _progress.progress_bar(3, "stage", interval=None)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_durations_read_as_a_person_would():
    assert [_progress._duration(s) for s in (5, 125, 7300)] == ["5 s", "2 min 05 s", "2 h 01 min"]


def _finetune(verbose):
    return FineTuneClassifier(
        "mlp", lr=0.05, max_steps=6, batch_size=16, random_state=0, device="cpu", verbose=verbose
    )


def _ensiam(verbose):
    return EnSiamPretrainer(
        "mlp",
        policy="gaussian_noise",
        max_epochs=2,
        batch_size=32,
        projector_dim=16,
        predictor_hidden_dim=8,
        device="cpu",
        random_state=0,
        verbose=verbose,
    )


@pytest.mark.parametrize(
    "make, fit_args, steps, label",
    [
        (_finetune, (X, y), 6, "FineTuneClassifier"),
        (_ensiam, (X,), 4, "EnSiamPretrainer"),  # 2 epochs x 2 batches, one bar for the run
    ],
)
def test_verbose_levels(make, fit_args, steps, label, log_output, capsys):
    make(0).fit(*fit_args)
    silent = capsys.readouterr()
    assert silent.out == "" and silent.err == ""
    make(1).fit(*fit_args)
    bar = capsys.readouterr()
    assert "train_loss" not in bar.out  # no epoch table at verbose=1
    lines = bar.err.splitlines()
    assert len(lines) == steps and lines[-1].startswith(f"{label}: {steps}/{steps} step (100 %)")
    assert "loss " in lines[-1]
    make(2).fit(*fit_args)
    table = capsys.readouterr()
    assert "train_loss" in table.out and f"{label}: {steps}/{steps} step" in table.err
