"""``dptrain --check-data``: the data as a run would use it, without training or leaving files."""

import sys
import tempfile
import time

from dptrain.cli import main as cli

from ..conftest import table_overrides
from .test_main import KEEP_LOGGING


def check(monkeypatch, capsys, overrides: list[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dptrain", "--check-data", *overrides, *KEEP_LOGGING])
    code = 0
    try:
        cli.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_data_describes_the_table_in_seconds_and_leaves_nothing(
    monkeypatch, capsys, tmp_path, visits_csv
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    started = time.perf_counter()
    code, out, err = check(monkeypatch, capsys, [*table_overrides(visits_csv), "tracker=none"])
    assert code == 0, err
    assert time.perf_counter() - started < 20
    lines = {line.split(maxsplit=1)[0]: line for line in out.splitlines()}
    assert "visits: 120 patients" in lines["data"] and "patients with several" in lines["data"]
    assert lines["split"].startswith("split        train 96 patients")
    assert "train 0:" in lines["labels"] and "test 0:" in lines["labels"]
    assert "site=north" in lines["inputs"]
    assert "excluded     sex, age" in out
    assert "missing" in lines and "imputed from the training split" in lines["missing"]
    assert "sex (2 values, per patient)" in lines["subgroups"]
    assert "site: 3 levels" in out and "nothing was trained" in out
    assert list(scratch.iterdir()) == []  # the scratch run directory is removed
    assert not (visits_csv.parent / "outputs").exists()


def test_check_data_refuses_bad_data_as_a_run_would(monkeypatch, capsys, tmp_path, visits_csv):
    overrides = [*table_overrides(visits_csv), "tracker=none", "data.exclude_columns=[lenfoll]"]
    code, out, err = check(monkeypatch, capsys, [*overrides, f"hydra.run.dir={tmp_path / 'r'}"])
    assert code == 2 and out == ""
    assert err.strip() == (
        "dptrain: error: data.exclude_columns: column 'lenfoll' not in visits.csv (its columns: "
        "patient_id, label, x0, x1, x2, x3, x4, x5, x6, x7, site, sex, ...)"
    )
    assert not (tmp_path / "r" / ".hydra").exists()
