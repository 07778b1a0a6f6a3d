"""W&B offline runs: the group, a flat config, the summary keys and a pseudonymised W&B Table."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from dptrain.cli import main as cli
from dptrain.reporting.results import read_results
from dptrain.tracking.base import FailSoftTracker
from dptrain.tracking.pseudonyms import PatientIdGuard, pseudonym_key
from dptrain.tracking.wandb import WandbTrackerConfig

from ..conftest import FAST, table_overrides
from .wandb_records import read_offline_run

KEEP_LOGGING = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default, not the env
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_has_group_flat_config_summary_and_a_pseudonymised_table(
    tmp_path, offline_wandb
):
    config = WandbTrackerConfig(project="dptrain-test", group="multirun/2024-05-01/10-00-00")
    tracker = PatientIdGuard(
        config.open(
            run_dir=tmp_path,
            run_name="unit",
            config={"privacy": {"epsilon": math.inf}, "model": {"hidden": [8, 8]}, "seed": 2},
        ),
        "pseudonymised",
        pseudonym_key(),
    )
    tracker.log_summary({"privacy/epsilon": math.inf, "utility/auroc": 0.8})
    tracker.log_table("patient_risk", pd.DataFrame({"patient_id": ["A7", "B2"], "auc": [0.7, 0.5]}))
    tracker.close(success=True)
    (note,) = tracker.notes()
    sync_dir = Path(note.removeprefix("wandb sync "))
    assert note.startswith("wandb sync ") and sync_dir.name.startswith("offline-run-")
    run = read_offline_run(sync_dir)
    assert (
        run.group == "multirun/2024-05-01/10-00-00" and run.name == tmp_path.name
    )  # the run folder, in a sweep
    # Flat keys, so the runs table filters on `privacy.epsilon` directly.
    assert run.config["privacy.epsilon"] == math.inf and run.config["model.hidden"] == [8, 8]
    assert "privacy" not in run.config and run.config["seed"] == 2
    assert run.summary["privacy/epsilon"] == math.inf and run.summary["utility/auroc"] == 0.8
    assert run.summary["patient_risk/_type"] == "table-file"
    (table_file,) = (sync_dir / "files" / "media" / "table").glob("patient_risk_*.table.json")
    table = json.loads(table_file.read_text())
    ids = [row[table["columns"].index("patient_id")] for row in table["data"]]
    assert all(value.startswith("p-") for value in ids) and len(set(ids)) == 2
    assert "A7" not in table_file.read_text()


def test_patient_table_is_not_sent_when_patient_ids_is_none(tmp_path, offline_wandb):
    tracker = PatientIdGuard(
        WandbTrackerConfig(project="dptrain-test").open(run_dir=tmp_path, run_name="n", config={}),
        "none",
        b"",
    )
    tracker.log_table("patient_risk", pd.DataFrame({"patient_id": ["A7"], "auc": [0.7]}))
    tracker.close(success=True)
    (run_folder,) = (tmp_path / "wandb").glob("offline-run-*")
    assert not list(run_folder.rglob("patient_risk*"))
    assert read_offline_run(run_folder).group == ""  # a single run has no group


def test_online_and_disabled_runs_print_no_sync_command(tmp_path, offline_wandb):
    tracker = FailSoftTracker(
        WandbTrackerConfig(mode="disabled").open(run_dir=tmp_path, run_name="n", config={})
    )
    tracker.close(success=True)
    assert tracker.notes() == []


@pytest.mark.slow
def test_a_multirun_job_logs_its_sweep_group_and_the_run_summary(
    monkeypatch, capsys, tmp_path, visits_csv, offline_wandb
):
    sweep_dir = tmp_path / "eps-sweep"
    overrides = [*table_overrides(visits_csv), *FAST, "tracker=wandb", "privacy.epsilon=4"]
    sweep = [f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
    argv = ["dptrain", "-m", *overrides, *KEEP_LOGGING, *sweep]
    monkeypatch.setattr(sys, "argv", argv)
    cli.main()
    out = capsys.readouterr().out
    (run_dir,) = [path for path in sweep_dir.iterdir() if (path / "results.json").exists()]
    (sync_line,) = [line for line in out.splitlines() if "wandb sync" in line]
    sync_dir = Path(sync_line.split("wandb sync ", 1)[1])
    assert sync_dir.parent == run_dir / "wandb"
    run = read_offline_run(sync_dir)
    assert run.group == "eps-sweep"  # the sweep directory (outside the working directory)
    assert run.config["privacy.epsilon"] == 4.0 and run.config["train.epochs"] == 2
    summary = read_results(run_dir / "results.json")["summary"]
    numbers = {k: v for k, v in summary.items() if isinstance(v, float) and math.isfinite(v)}
    assert {"privacy/epsilon", "utility/auroc", "audit/patient_auc_max"} <= set(numbers)
    assert {key: run.summary[key] for key in numbers} == pytest.approx(numbers)
