"""A run SIGKILLed mid-training and re-launched into its directory ends as an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dptrain.data.fake import write_fake_ehr_table
from dptrain.training.resume import TRAINING_STATE_FILE

from ..conftest import table_overrides

EPOCHS = 40
TIMEOUT_SECONDS = 120


def _command(csv: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dptrain",
        *table_overrides(csv),
        f"train.epochs={EPOCHS}",
        "train.batch_size=16",
        "train.checkpoint_every=1",
        "model.hidden=[64,64]",
        "privacy.epsilon=8",
        "audit=none",
        "tracker=none",
        f"hydra.run.dir={run_dir}",
    ]


def _saved_epoch(state: Path) -> int:
    try:
        return int(torch.load(state, weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError):  # not written yet (the write is atomic)
        return 0


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_numbers(tmp_path):
    csv = write_fake_ehr_table(
        tmp_path / "visits.csv", n_patients=200, max_records_per_patient=2, signal=3.0, seed=0
    )
    uninterrupted_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    # Both start together (two cores): the uninterrupted run is the reference.
    reference = subprocess.Popen(
        _command(csv, uninterrupted_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    victim = subprocess.Popen(
        _command(csv, killed_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = killed_dir / TRAINING_STATE_FILE
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not (state.exists() and _saved_epoch(state) >= 1):
        assert victim.poll() is None, "the run ended before its first training checkpoint"
        assert time.monotonic() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = _saved_epoch(state)
    assert 1 <= killed_at < EPOCHS, f"the kill came after training (state at epoch {killed_at})"
    assert not (killed_dir / "results.json").exists()

    resumed = subprocess.run(
        _command(csv, killed_dir), capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=TIMEOUT_SECONDS) == 0, reference.stderr.read()

    expected, got = _results(uninterrupted_dir), _results(killed_dir)
    assert got["privacy"] == expected["privacy"]  # ε, σ, q, steps: the accountant's exactly
    assert got["utility"] == expected["utility"]
    assert got["history"] == expected["history"]
    assert not state.exists()  # removed once the run completed
    assert f"after epoch {killed_at}" in (killed_dir / "main.log").read_text()
