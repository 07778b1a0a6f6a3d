import json
import logging

import pandas as pd
import pytest

from dptrain.errors import ConfigError
from dptrain.tracking.base import FailSoftTracker, NullTracker
from dptrain.tracking.local import CsvTrackerConfig
from dptrain.tracking.wandb import WandbTrackerConfig


class ExplodingTracker(NullTracker):
    def log_epoch(self, metrics, *, step):
        raise ConnectionError("network down")

    def close(self, *, success):
        raise RuntimeError("cannot finish")


def test_tracker_failures_are_logged_once_and_never_raised(caplog):
    tracker = FailSoftTracker(ExplodingTracker())
    with caplog.at_level(logging.WARNING):
        for step in range(3):
            tracker.log_epoch({"loss": 1.0}, step=step)
        tracker.close(success=True)
    assert tracker.failures == ["log_epoch"] * 3 + ["close"]
    warnings = [r.message for r in caplog.records if "failed in log_epoch" in r.message]
    assert len(warnings) == 1 and "network down" in warnings[0]


def test_csv_tracker_writes_epochs_summary_tables_and_artifacts(tmp_path):
    tracker = CsvTrackerConfig().open(run_dir=tmp_path, run_name="r", config={"seed": 1})
    tracker.log_epoch({"loss": 0.7, "epsilon_rdp": 1.0}, step=1)
    tracker.log_epoch({"loss": 0.5, "epsilon_rdp": 1.5}, step=2)
    tracker.log_summary({"utility/auroc": 0.8})
    tracker.log_table("patient_risk", pd.DataFrame({"patient_id": ["a"], "auc": [0.6]}))
    report = tmp_path / "report.md"
    report.write_text("# r")
    tracker.log_artifact("report", "report", [report])
    tracker.close(success=True)
    folder = tmp_path / "tracker"
    epochs = pd.read_csv(folder / "epochs.csv")
    assert epochs["loss"].tolist() == [0.7, 0.5] and epochs["step"].tolist() == [1, 2]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == {"utility/auroc": 0.8, "run_succeeded": True}
    assert (folder / "patient_risk.csv").exists()
    assert (folder / "artifacts" / "report" / "report.md").read_text() == "# r"
    assert json.loads((folder / "config.json").read_text()) == {"seed": 1}


def test_wandb_mode_defaults_to_offline_and_respects_wandb_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert WandbTrackerConfig().resolved_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbTrackerConfig().resolved_mode() == "disabled"
    assert WandbTrackerConfig(mode="online").resolved_mode() == "online"
    with pytest.raises(ConfigError, match=r"tracker\.mode must be one of"):
        WandbTrackerConfig(mode="cloud")


def test_wandb_offline_run_records_metrics_and_the_report_artifact(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = WandbTrackerConfig(project="dptrain-test").open(
        run_dir=tmp_path, run_name="unit", config={"privacy": {"epsilon": 3.0}}
    )
    tracker.log_epoch({"loss": 0.5}, step=1)
    tracker.log_summary({"privacy/epsilon": 3.0})
    tracker.log_table("patient_risk", pd.DataFrame({"patient_id": ["a"], "auc": [0.7]}))
    report = tmp_path / "report.md"
    report.write_text("# report")
    tracker.log_artifact("report", "report", [report])
    tracker.close(success=True)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # offline: written locally, no account or network
    assert list(runs[0].glob("*.wandb"))
