"""Progress on stderr, shared by the `emonet` commands and training (emonet_tf/progress.py): a tqdm bar on a
terminal, otherwise a line every 30 s and at the end; --no-progress silences both. Also TensorFlow's log
level default and the usage of `python -m emonet_tf.weights`. No TensorFlow is imported here."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys

import pytest
from tqdm import tqdm

from emonet_tf import cli, progress


def bar_of(monkeypatch, terminal: bool, no_progress: bool = False, **kwargs):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    return cli._progress(10, argparse.Namespace(no_progress=no_progress), **kwargs)


def test_cli_progress_writes_log_lines_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    with bar_of(monkeypatch, terminal=False) as bar:
        assert isinstance(bar, progress.LogProgress)
        bar.update(4)  # within the 30 s interval: no line yet
        assert capsys.readouterr().err == ""
        bar.update(6)  # the total reached: a line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10/10" in err and "frame" in err and "\r" not in err


def test_cli_progress_interval_and_final_line(monkeypatch):
    stream = io.StringIO()
    with progress.LogProgress(None, "read", interval=0.0, unit="value", stream=stream) as bar:
        bar.update(3)
        bar.update(2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("read: 3") and "5" in lines[1] and "value" in lines[1]


def test_cli_progress_is_tqdm_on_a_terminal_and_silent_with_no_progress(monkeypatch, capsys):
    with bar_of(monkeypatch, terminal=True, unit="value", unit_scale=True) as bar:
        assert isinstance(bar, tqdm) and not bar.disable and bar.unit == "value"
    for terminal in (True, False):
        with bar_of(monkeypatch, terminal=terminal, no_progress=True) as bar:
            bar.update(10)
        assert bar.disable
    assert "10/10" not in capsys.readouterr().err


def test_training_bars_still_log_to_the_training_logger(monkeypatch, caplog):
    from emonet_tf.training import progress as training_progress

    caplog.set_level(logging.INFO, logger="emonet_tf.training.progress")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with training_progress.bar(2, "cache") as bar:
        assert isinstance(bar, progress.LogProgress)
        bar.update(2)
    assert [r.name for r in caplog.records] == ["emonet_tf.training.progress"]


@pytest.mark.parametrize("preset", [None, "0"])
def test_tf_log_level_defaults_to_2_and_a_user_setting_wins(monkeypatch, preset):
    if preset is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", preset)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == (preset or "2")


def test_python_dash_m_weights_usage_names_itself(capsys):
    from emonet_tf.weights import __main__ as weights_main

    with pytest.raises(SystemExit):
        weights_main.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: emonet convert") and "\n   or: python -m emonet_tf.weights [-h]" in out
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    assert "python -m emonet_tf.weights" not in capsys.readouterr().out.split("\n\n")[0]
