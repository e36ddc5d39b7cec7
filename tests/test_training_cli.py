"""train.py: absl flags (and --flagfile) reach TrainConfig; bad input is one clear line, not a traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _training_helpers import make_dataset, worker_env

TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train.py")


def run(args, timeout=300):
    return subprocess.run(
        [sys.executable, TRAIN] + args, env=worker_env(), capture_output=True, text=True, timeout=timeout
    )


def test_flagfile_run_trains_resumes_and_reports(tmp_path):
    dataset_dir = make_dataset(str(tmp_path / "tfds"), videos_per_class=(3, 1), frames_per_video=2).data_dir
    model_dir = tmp_path / "run"
    flagfile = tmp_path / "run.flags"
    flagfile.write_text(
        "\n".join(
            [
                f"--dataset={dataset_dir}",
                f"--model_dir={model_dir}",
                "--init=scratch",
                "--global_batch_size=4",
                "--epochs=1",
                "--max_steps=3",
                "--checkpoint_every=2",
                "--log_every=1",
                "--noexport",
                "--learning_rate=0.001",
            ]
        )
        + "\n"
    )
    first = run([f"--flagfile={flagfile}"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "mean_auc" in first.stdout and "0.7450" in first.stdout  # the report beside the paper's figures
    saved = json.loads((model_dir / "run_config.json").read_text())
    assert saved["learning_rate"] == 0.001 and saved["global_batch_size"] == 4 and saved["init"] == "scratch"
    metrics = json.loads((model_dir / "eval" / "eval_metrics.json").read_text())
    assert metrics["num_examples"] == 6 and np.isfinite(metrics["top1"])
    # Same flags, more steps: resumes from step 3 (the final checkpoint of the first run).
    second = run([f"--flagfile={flagfile}", "--max_steps=4"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resumed from" in second.stderr and "Done at step 4" in second.stderr


def test_bad_input_is_one_clear_error(tmp_path):
    result = run(
        ["--dataset=no_such_dataset_xyz", f"--data_dir={tmp_path}", f"--model_dir={tmp_path / 'm'}", "--init=scratch"],
        timeout=120,
    )
    assert result.returncode == 1
    assert "train.py: error: Unknown dataset 'no_such_dataset_xyz'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # two more train.py processes; test_training.py checks the same in-process
def test_refused_command_writes_nothing_and_the_corrected_one_runs(tmp_path):
    dataset_dir = make_dataset(str(tmp_path / "tfds"), videos_per_class=(3, 1), frames_per_video=2).data_dir
    model_dir = tmp_path / "run"
    garbage = tmp_path / "alexnet.npy"
    garbage.write_bytes(b"not a weight file")
    common = [
        f"--dataset={dataset_dir}",
        f"--model_dir={model_dir}",
        "--global_batch_size=4",
        "--max_steps=1",
        "--noexport",
    ]
    refused = run(common + ["--init=imagenet", f"--weights={garbage}"], timeout=120)
    assert refused.returncode == 1 and "train.py: error:" in refused.stderr, refused.stderr[-3000:]
    assert not model_dir.exists()
    fixed = run(common + ["--init=scratch"])
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "Done at step 1" in fixed.stderr
    # Progress bars of the feature cache and of the evaluation, counted in frames.
    assert "feature cache train" in fixed.stderr and "18/18" in fixed.stderr and "6/6" in fixed.stderr
