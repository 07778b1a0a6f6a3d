"""A second run into a directory a live run holds is refused before Hydra writes into it."""

import fcntl
import os

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
