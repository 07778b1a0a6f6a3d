"""End-to-end runs of the `dptrain` app (in-process, tiny settings) and its error handling."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from dptrain.cli import main as cli
from dptrain.data.fake import fake_ehr_table
from dptrain.reporting.results import read_results

from ..conftest import FAST, table_overrides

# Hydra's logging setup (dictConfig) closes every live handler, including absl's (imported by
# dp_accounting), whose stream inside pytest is pytest's capture file; in-process runs keep
# Python's logging as it is. `test_python_dash_m_...` runs the app with its real logging.
KEEP_LOGGING = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def run_app(monkeypatch, capsys, run_dir: Path, overrides: list[str]) -> tuple[int, str, str]:
    """Runs `dptrain <overrides>` in this process; returns (exit code, stdout, stderr)."""
    argv = ["dptrain", *overrides, *KEEP_LOGGING, f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        cli.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_private_run_writes_a_complete_results_file(monkeypatch, capsys, tmp_path, visits_csv):
    run_dir = tmp_path / "run"
    code, out, _ = run_app(
        monkeypatch,
        capsys,
        run_dir,
        [*table_overrides(visits_csv), *FAST, "privacy.epsilon=4", "privacy.unit=record"],
    )
    assert code == 0
    for line in ("dataset", "privacy      ε =", "σ =", "AUROC =", "budget", "leakage", "report"):
        assert line in out
    results = read_results(run_dir / "results.json")
    assert results["schema_version"] and results["status"] == "complete"
    privacy = results["privacy"]
    assert privacy["private"] and privacy["epsilon"] <= 4.0 and privacy["unit"] == "record"
    assert privacy["max_records_per_patient"] > 1
    assert set(results["utility"]["overall"]) >= {"auroc", "auprc", "accuracy", "balanced_accuracy"}
    assert "sex" in results["utility"]["subgroups"]
    audit = results["audit"]
    assert audit["num_models"] == 4 and len(audit["attacks"]) == 4
    assert {"record", "patient", "single_pair", "patient_epsilon"} <= set(audit["bounds"])
    assert audit["bounds"]["group_size"] == 3 and audit["bounds"]["classic_group_privacy"]
    assert {"median_auc", "p99_auc", "max_auc", "exposed", "exposed_lower_bound"} <= set(
        audit["patients"]
    )
    assert audit["subgroups"][0]["attribute"] == "all patients"
    assert {row["attribute"] for row in audit["subgroups"]} == {"all patients", "sex"}
    assert audit["epsilon_lower_bound"]["ceiling"] >= audit["epsilon_lower_bound"]["epsilon"]
    assert "signals" not in audit and "membership" not in audit  # arrays go to audit_arrays.npz
    assert results["config"]["privacy"]["epsilon"] == 4.0
    assert set(results["versions"]) >= {"torch", "opacus", "python", "dptrain_git"}
    for name in ("report.md", "model.pt", "patient_risk.csv", "audit_arrays.npz", "roc.png"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    assert report.index("Privacy budget vs measured leakage") < report.index(
        "## Leakage by subgroup"
    )
    assert report.index("## Leakage by subgroup") < report.index("## Utility")
    risk = (run_dir / "patient_risk.csv").read_text().splitlines()
    assert risk[0] == (
        "patient_id,sex,n_records,auc,standard_error,lower_bound,shrunken_auc,p_value,q_value,"
        "exposed_fdr"
    )
    assert len(risk) == 1 + 120


@pytest.mark.slow
def test_non_private_baseline_has_infinite_epsilon_and_the_same_schema(
    monkeypatch, capsys, tmp_path, visits_csv
):
    private_dir, baseline_dir = tmp_path / "dp", tmp_path / "none"
    overrides = [*table_overrides(visits_csv), *FAST, "audit=none"]
    assert run_app(monkeypatch, capsys, private_dir, overrides)[0] == 0
    assert run_app(monkeypatch, capsys, baseline_dir, [*overrides, "privacy=none"])[0] == 0
    private, baseline = (read_results(d / "results.json") for d in (private_dir, baseline_dir))
    assert math.isinf(baseline["privacy"]["epsilon"]) and not baseline["privacy"]["private"]
    assert json.loads((baseline_dir / "results.json").read_text())["privacy"]["epsilon"] == "inf"
    assert private["utility"].keys() == baseline["utility"].keys()
    assert private["utility"]["overall"].keys() == baseline["utility"]["overall"].keys()
    assert baseline["audit"] is None


def _bad_table(tmp_path: Path, column: str, values: list) -> list[str]:
    """Overrides for a fake table whose ``column`` is replaced by ``values``."""
    table = fake_ehr_table(n_patients=len(values), seed=0)
    table[column] = values
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    return [*table_overrides(path), *FAST]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("epsilon", "privacy.epsilon must be > 0 (inf: the non-private baseline), got -1.0"),
        ("delta_range", "privacy.delta must be in (0, 1), got 2.0"),
        ("delta_large", "privacy.delta=0.1 is not below 1/N"),
        ("missing_file", "data.path: file not found"),
        ("missing_column", "data.label_columns: column 'outcome' not in visits.csv"),
        ("text_labels", "is not numeric (e.g. 'yes')"),
        ("nan_labels", "has 1 missing labels"),
        ("missing_id", "data.id_column: 1 rows of bad.csv have no patient id"),
        ("empty_split", "split.test_fraction=0.001 leaves an empty split"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_results(
    monkeypatch, capsys, tmp_path, visits_csv, case, message
):
    base = [*table_overrides(visits_csv), *FAST, "audit=none"]
    overrides = {
        "epsilon": lambda: [*base, "privacy.epsilon=-1"],
        "delta_range": lambda: [*base, "privacy.delta=2"],
        "delta_large": lambda: [*base, "privacy.delta=0.1"],
        "missing_file": lambda: [*base, "data.path=/no/such/file.csv"],
        "missing_column": lambda: [*base, "data.label_columns=[outcome]"],
        "text_labels": lambda: _bad_table(tmp_path, "label", ["yes", "no"] * 10),
        "nan_labels": lambda: _bad_table(tmp_path, "label", [0, 1, None] + [1] * 7),
        "missing_id": lambda: _bad_table(tmp_path, "patient_id", ["a", None, "c"]),
        "empty_split": lambda: [*base, "split.test_fraction=0.001"],
    }[case]()
    run_dir = tmp_path / "run"
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 2
    assert err.strip().startswith("dptrain: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (run_dir / "results.json").exists()


def test_verbose_shows_the_traceback(monkeypatch, capsys, tmp_path, visits_csv):
    overrides = [*table_overrides(visits_csv), *FAST, "privacy.epsilon=-1", "hydra.verbose=true"]
    code, _, err = run_app(monkeypatch, capsys, tmp_path / "run", overrides)
    assert code != 0 and "ConfigError" in err and "Traceback" in err


@pytest.mark.slow
def test_python_dash_m_runs_the_default_experiment_on_embedded_data(tmp_path):
    """As a user would: `python -m dptrain` with no data argument trains on ACTG 175."""
    completed = subprocess.run(
        [sys.executable, "-m", "dptrain", "debug=fast", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "actg175: 2139 patients" in completed.stdout
    assert read_results(tmp_path / "results.json")["data"]["cohort"]["n_patients"] == 2139


def test_ctrl_c_is_one_line_exit_130_and_no_results(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    run_dir = tmp_path / "run"
    code, out, err = run_app(monkeypatch, capsys, run_dir, ["tracker=none", "audit=none"])
    assert code == 130 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "no results.json" in lines[0]
    assert "Traceback" not in err and not (run_dir / "results.json").exists()


def test_a_run_directory_in_use_is_refused_and_a_stale_lock_is_not(
    monkeypatch, capsys, tmp_path, visits_csv
):
    import os

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".dptrain.lock").write_text(str(os.getpid()))  # a live holder: this process
    overrides = [*table_overrides(visits_csv), *FAST, "audit=none"]
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 2 and "in use by process" in err and len(err.strip().splitlines()) == 1
    (run_dir / ".dptrain.lock").write_text("999999999")  # a killed run's lock
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    assert not (run_dir / ".dptrain.lock").exists() and (run_dir / "results.json").exists()


def test_a_failing_rerun_removes_the_earlier_results(monkeypatch, capsys, tmp_path, visits_csv):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"status": "complete", "schema_version": "1.2"}')
    overrides = [*table_overrides(visits_csv), *FAST, "audit=none", "data.label_columns=[nope]"]
    code, _, _ = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 2 and not (run_dir / "results.json").exists()


def test_opacus_log_of_zero_warnings_are_silenced_and_others_are_not(monkeypatch, capsys, tmp_path):
    import warnings

    import numpy as np
    from opacus.accountants import PRVAccountant

    from dptrain.errors import DataError

    seen: list[str] = []

    def accountant_at_q_1(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # under the filters main installed (first in line)
            cli.silence_known_warnings()
            accountant = PRVAccountant()
            for _ in range(5):
                accountant.step(noise_multiplier=0.5, sample_rate=1.0)  # a one-batch small table
            assert np.isfinite(accountant.get_epsilon(delta=1e-5))
            np.log(np.zeros(1))  # the same warning from elsewhere still shows
        seen.extend(f"{w.filename}: {w.message}" for w in caught)
        raise DataError("stop here")

    monkeypatch.setattr(cli, "run", accountant_at_q_1)
    code, _, _ = run_app(monkeypatch, capsys, tmp_path / "run", ["tracker=none", "audit=none"])
    assert code == 2
    divide = [line for line in seen if "divide by zero encountered in log" in line]
    assert len(divide) == 1 and "test_main.py" in divide[0]
