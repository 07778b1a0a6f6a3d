"""A bad point of a sweep fails alone: the other jobs finish, the report lists it, exit 2."""

from __future__ import annotations

import sys

import pytest

from dptrain.cli import main as cli
from dptrain.reporting.sweep_report import MARKDOWN_FILE

from ..conftest import FAST, table_overrides
from .test_main import KEEP_LOGGING


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(monkeypatch, capsys, tmp_path, visits_csv):
    sweep = tmp_path / "sweep"
    argv = [
        "dptrain",
        "--multirun",
        *table_overrides(visits_csv),
        *FAST,
        "audit=none",
        "privacy.epsilon=-1,4",
        *KEEP_LOGGING,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dptrain")]
    assert errors[0].startswith("dptrain: error: job 0: privacy.epsilon must be > 0")
    assert "1 job(s) of the sweep failed" in errors[-1]
    assert not (sweep / "0" / "results.json").exists()
    assert (sweep / "1" / "results.json").exists()  # the job after the failure ran
    report = (sweep / MARKDOWN_FILE).read_text()
    assert "Left out" in report and "1 finished run" in report

    # Re-launched into the same sweep dir: the finished job is kept, the failed one tried again.
    finished = (sweep / "1" / "results.json").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        cli.main()
    out = capsys.readouterr().out
    assert f"finished     {sweep / '1'} (same config: kept, not run again)" in out
    assert (sweep / "1" / "results.json").stat().st_mtime_ns == finished


@pytest.mark.slow
def test_a_job_failing_in_a_launchers_own_process_still_fails_the_sweep(tmp_path, visits_csv):
    """joblib runs each job in a worker process, whose failure count never reaches the parent;
    the sweep's exit status comes from the runs the sweep report found incomplete."""
    import subprocess

    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "dptrain",
        "--multirun",
        *table_overrides(visits_csv),
        *FAST,
        "audit=none",
        "privacy.epsilon=-1,4",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "1 job(s) of the sweep failed" in done.stderr.splitlines()[-1]
    assert (sweep / "1" / "results.json").exists() and not (sweep / "0" / "results.json").exists()
