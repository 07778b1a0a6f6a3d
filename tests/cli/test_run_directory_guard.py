"""A second run into a directory a live run holds is refused before Hydra writes into it."""

import fcntl
import os
import subprocess
import sys

from dptrain.cli.rundir import LOCK_FILE

from ..conftest import FAST, table_overrides
from .test_main import run_app


def test_a_held_run_directory_keeps_the_first_runs_hydra_files(
    monkeypatch, capsys, tmp_path, visits_csv
):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    first = run_dir / ".hydra" / "config.yaml"
    first.write_text("the first run's config\n")
    lock = run_dir / LOCK_FILE
    lock.write_text("1")  # the holder's pid as the first run wrote it
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as by a live run
    try:
        code, _, err = run_app(
            monkeypatch, capsys, run_dir, [*table_overrides(visits_csv), *FAST, "audit=none"]
        )
    finally:
        os.close(holder)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "is in use by process 1" in lines[0]
    assert first.read_text() == "the first run's config\n"  # Hydra never wrote here
    assert not (run_dir / "results.json").exists()


def test_a_free_directory_runs(monkeypatch, capsys, tmp_path, visits_csv):
    run_dir = tmp_path / "run"
    code, _, err = run_app(
        monkeypatch, capsys, run_dir, [*table_overrides(visits_csv), *FAST, "audit=none"]
    )
    assert code == 0, err
    assert (run_dir / ".hydra" / "config.yaml").exists() and not (run_dir / LOCK_FILE).exists()


def test_a_held_run_directory_keeps_the_first_runs_log(tmp_path, visits_csv):
    """With Hydra's own job logging (a ``main.log`` it opens for appending), as users run it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "main.log"  # the job log of `python -m dptrain` (job name: main)
    log.write_text("the first run's log\n")
    lock = run_dir / LOCK_FILE
    lock.write_text("1")
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dptrain",
                *table_overrides(visits_csv),
                *FAST,
                "audit=none",
                f"hydra.run.dir={run_dir}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.close(holder)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "is in use by process 1" in done.stderr
    assert log.read_text() == "the first run's log\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE, "main.log"]


def test_the_guard_sends_hydras_job_log_of_a_held_directory_to_the_null_device(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import read_write

    from dptrain.cli.callbacks import RunDirectoryGuard
    from dptrain.cli.config import CONFIG_DIR, register_schemas

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose(
            config_name="config", overrides=[f"hydra.run.dir={run_dir}"], return_hydra_config=True
        )
    GlobalHydra.instance().clear()
    with read_write(config.hydra):
        config.hydra.runtime.output_dir = str(run_dir)  # as Hydra sets it before a run
    RunDirectoryGuard().on_run_start(config)  # free: Hydra writes as usual
    assert config.hydra.output_subdir == ".hydra"
    assert config.hydra.job_logging.handlers.file.filename != os.devnull
    lock = run_dir / LOCK_FILE
    lock.write_text("1")
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        RunDirectoryGuard().on_run_start(config)
    finally:
        os.close(holder)
    assert config.hydra.output_subdir is None
    assert config.hydra.job_logging.handlers.file.filename == os.devnull
