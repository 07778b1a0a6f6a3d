"""Faults a run survives: SIGKILL at any stage, a second run into a held directory, a full disk.

The invariant: a run directory holds a ``results.json`` only when that run finished, and every
``model.pt`` in it loads; the next run into the directory works.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dptrain.atomic
from dptrain.cli.rundir import claim_run_directory
from dptrain.data.fake import write_fake_ehr_table
from dptrain.errors import ConfigError
from dptrain.reporting.results import read_results
from dptrain.training.checkpoint import load_checkpoint

from ..conftest import FAST, table_overrides
from .test_main import run_app

RUN_TIMEOUT_SECONDS = 240


def _overrides(csv: Path, run_dir: Path) -> list[str]:
    return [
        *table_overrides(csv),
        *FAST,
        "audit.num_models=6",
        "privacy.epsilon=8",
        f"hydra.run.dir={run_dir}",
    ]


def _start(csv: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dptrain", *_overrides(csv, run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen, condition, what: str) -> None:
    """SIGKILLs ``process`` as soon as ``condition()`` holds (polling every 10 ms)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _assert_unfinished_but_sound(run_dir: Path) -> None:
    """No results.json (or a complete one, if the kill came after it); model.pt loads if present."""
    results = run_dir / "results.json"
    if results.exists():  # killed after the run had finished writing
        read_results(results)
    if (run_dir / "model.pt").exists():
        assert load_checkpoint(run_dir / "model.pt")["format"] == 3


def _saved_models(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "audit_models").glob("model_*.npz"))


@pytest.mark.slow
def test_sigkill_at_each_stage_leaves_no_results_and_the_next_run_completes(tmp_path):
    csv = write_fake_ehr_table(
        tmp_path / "visits.csv", n_patients=80, max_records_per_patient=2, seed=1
    )
    run_dir = tmp_path / "run"

    # Stage 1: killed during the audit; meanwhile a second run into the held directory refuses.
    first = _start(csv, run_dir)
    lock = run_dir / ".dptrain.lock"
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The second run's claim, in this process: a second interpreter's start-up (seconds under
    # load) could outlast the first run. `test_run_directory_guard` runs the whole CLI for it.
    with pytest.raises(ConfigError, match=rf"is in use by process {first.pid}"):
        with claim_run_directory(run_dir):
            pass
    assert first.poll() is None, "the first run finished before the second one claimed"
    _kill_when(first, lambda: bool(_saved_models(run_dir)), "an audit model was saved")
    assert not (run_dir / "results.json").exists()
    _assert_unfinished_but_sound(run_dir)
    saved = len(_saved_models(run_dir))

    # Stage 2: killed while the run writes its files (model.pt is the first).
    writing = _start(csv, run_dir)
    _kill_when(writing, (run_dir / "model.pt").exists, "model.pt was written")
    _assert_unfinished_but_sound(run_dir)

    # The next run in the same directory completes, reusing the saved audit models.
    done = subprocess.run(
        [sys.executable, "-m", "dptrain", *_overrides(csv, run_dir)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    assert read_results(run_dir / "results.json")["status"] == "complete"
    assert load_checkpoint(run_dir / "model.pt")["format"] == 3
    assert len(_saved_models(run_dir)) == 6 and saved >= 1
    leftovers = [*run_dir.glob(".*.tmp"), *(run_dir / "audit_models").glob(".*.tmp")]
    assert not leftovers and not (run_dir / ".dptrain.lock").exists()


def test_a_run_into_a_directory_another_process_holds_refuses_in_one_line(
    monkeypatch, capsys, tmp_path, visits_csv
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    earlier = run_dir / "model.pt"
    earlier.write_bytes(b"the holder's file")
    with open(run_dir / ".dptrain.lock", "w") as lock:  # a live holder: an flock, as a run has
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("1")
        lock.flush()
        code, _, err = run_app(monkeypatch, capsys, run_dir, [*table_overrides(visits_csv), *FAST])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is in use by process 1; wait for it or choose another hydra.run.dir" in err
    assert earlier.read_bytes() == b"the holder's file"  # nothing of the holder's touched


@pytest.mark.slow
@pytest.mark.parametrize("target", ["results.json", "model.pt", "model_0.npz"])
def test_disk_full_mid_write_is_one_line_and_leaves_no_partial_file(
    monkeypatch, capsys, tmp_path, visits_csv, target
):
    real_fdopen = os.fdopen

    class FullDisk:
        """A file that takes half of the first write, then reports a full disk."""

        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(bytes(data)[: max(1, len(data) // 2)])
            self.file.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.file.name)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def fdopen(descriptor, *args, **kwargs):
        file = real_fdopen(descriptor, *args, **kwargs)
        if Path(os.readlink(f"/proc/self/fd/{descriptor}")).name.startswith(f".{target}."):
            return FullDisk(file)
        return file

    monkeypatch.setattr(dptrain.atomic.os, "fdopen", fdopen)
    run_dir = tmp_path / "run"
    audit = ["audit.num_models=2"] if target.endswith(".npz") else ["audit=none"]
    code, _, err = run_app(
        monkeypatch, capsys, run_dir, [*table_overrides(visits_csv), *FAST, *audit]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and "no results.json" in err
    assert not (run_dir / "results.json").exists()
    assert not list(run_dir.glob(".*.tmp"))
    if target == "results.json":
        assert load_checkpoint(run_dir / "model.pt")["format"] == 3
    else:  # the checkpoint failed, or the audit before it
        assert not (run_dir / "model.pt").exists()
    assert not list((run_dir / "audit_models").glob("*"))  # an audit model: complete or none
