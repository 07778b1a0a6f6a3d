"""The MLflow tracker on a local file store: params, per-epoch metrics, summary and artifacts."""

import importlib.util
import math
import sys

import pandas as pd
import pytest

from dptrain.cli import main as cli
from dptrain.errors import ConfigError
from dptrain.reporting.results import read_results
from dptrain.tracking.mlflow_tracker import MlflowTrackerConfig, mlflow_name
from dptrain.tracking.pseudonyms import PatientIdGuard, pseudonym_key

from ..conftest import FAST, table_overrides

mlflow_tracking = pytest.importorskip("mlflow.tracking")
KEEP_LOGGING = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def _artifacts(client, run_id: str, folder: str | None = None) -> set[str]:
    return {entry.path for entry in client.list_artifacts(run_id, folder)}


def test_a_run_in_a_file_store_has_params_curves_summary_and_artifacts(tmp_path):
    run_dir = tmp_path / "runs" / "3-visits-dp"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "report.md").write_text("# report")
    (run_dir / "plots" / "roc.png").write_bytes(b"\x89PNG")
    config = MlflowTrackerConfig(tracking_uri=str(tmp_path / "store"), group="eps-sweep")
    tracker = PatientIdGuard(
        config.open(
            run_dir=run_dir,
            run_name="visits-dp",
            config={"privacy": {"epsilon": math.inf}, "model": {"hidden": [8, 8]}},
        ),
        "pseudonymised",
        pseudonym_key(),
    )
    for epoch, loss in enumerate([0.7, 0.6, 0.5], start=1):
        tracker.log_epoch({"loss": loss, "epsilon": epoch / 2}, step=epoch)
    tracker.log_summary({"utility/auroc": 0.8, "subgroup/sex=F/patient_auc_max": 0.7})
    tracker.log_table("patient_risk", pd.DataFrame({"patient_id": ["A7"], "auc": [0.7]}))
    tracker.log_images({"roc": run_dir / "plots" / "roc.png"})
    tracker.log_artifact("report", "report", [run_dir / "report.md"])
    tracker.close(success=True)

    uri = (tmp_path / "store").resolve().as_uri()
    assert tracker.notes() == [f"mlflow ui --backend-store-uri {uri}"]
    client = mlflow_tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dptrain").experiment_id])
    assert run.info.run_name == "3-visits-dp" and run.info.status == "FINISHED"
    assert run.data.tags["group"] == "eps-sweep" and run.data.tags["dptrain.name"] == "visits-dp"
    assert run.data.params == {"privacy.epsilon": "inf", "model.hidden": "[8, 8]"}
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.6), (3, 0.5)]
    assert run.data.metrics["utility/auroc"] == 0.8
    assert run.data.metrics["subgroup/sex_F/patient_auc_max"] == 0.7  # `=` is not allowed
    assert _artifacts(client, run.info.run_id) == {
        "config.json",
        "patient_risk.csv",
        "plots",
        "report.md",
    }
    assert _artifacts(client, run.info.run_id, "plots") == {"plots/roc.png"}
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "patient_risk.csv", tmp_path))
    assert table["patient_id"].str.startswith("p-").all()  # pseudonymised, as for W&B


def test_a_failed_run_is_marked_failed_and_parallel_jobs_share_the_experiment(tmp_path):
    config = MlflowTrackerConfig(tracking_uri=(tmp_path / "store").as_uri(), experiment="e")
    first = config.open(run_dir=tmp_path / "a", run_name="a", config={})
    second = config.open(run_dir=tmp_path / "b", run_name="b", config={})
    first.close(success=False)
    second.close(success=True)
    client = mlflow_tracking.MlflowClient(config.resolved_uri())
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert {run.info.run_name: run.info.status for run in runs} == {"a": "FAILED", "b": "FINISHED"}
    assert all("group" not in run.data.tags for run in runs)  # single runs have no group


def test_tracking_uri_defaults_to_the_environment_then_to_mlruns_here(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MlflowTrackerConfig().resolved_uri() == (tmp_path / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.hospital:5000")
    assert MlflowTrackerConfig().resolved_uri() == "http://mlflow.hospital:5000"
    assert MlflowTrackerConfig(tracking_uri="sqlite:///x.db").resolved_uri() == "sqlite:///x.db"


def test_names_mlflow_refuses_are_made_valid():
    assert mlflow_name("subgroup/age=[50, 120)/share") == "subgroup/age__50_ 120_/share"
    assert mlflow_name("a//b/") == "a/b" and mlflow_name("x/../y") == "x/__/y"


def test_config_errors_are_one_line_and_name_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match=r"tracker\.patient_ids must be one of"):
        MlflowTrackerConfig(patient_ids="hashed")
    with pytest.raises(ConfigError, match=r"tracker\.experiment must be a non-empty"):
        MlflowTrackerConfig(experiment=" ")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "mlflow" else real_find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"pip install 'dptrain\[mlflow\]'"):
        MlflowTrackerConfig()


def test_a_missing_mlflow_stops_the_cli_with_exit_2(monkeypatch, capsys, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "mlflow" else real_find_spec(name, *args),
    )
    argv = ["dptrain", "tracker=mlflow", *KEEP_LOGGING, f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "pip install 'dptrain[mlflow]'" in err
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_dptrain_with_tracker_mlflow_fills_the_file_store(
    monkeypatch, capsys, tmp_path, visits_csv
):
    run_dir, store = tmp_path / "run", tmp_path / "mlruns"
    overrides = [
        *table_overrides(visits_csv),
        *FAST,
        "tracker=mlflow",
        f"tracker.tracking_uri={store}",
        "privacy.epsilon=4",
    ]
    monkeypatch.setattr(
        sys, "argv", ["dptrain", *overrides, *KEEP_LOGGING, f"hydra.run.dir={run_dir}"]
    )
    cli.main()
    out = capsys.readouterr().out
    assert f"tracker      mlflow ui --backend-store-uri {store.as_uri()}" in out
    client = mlflow_tracking.MlflowClient(store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("dptrain").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["privacy.epsilon"] == "4.0" and run.data.params["train.epochs"] == "2"
    epsilon_curve = client.get_metric_history(run.info.run_id, "train/epsilon")
    assert [metric.step for metric in epsilon_curve] == [1, 2]
    results = read_results(run_dir / "results.json")
    assert epsilon_curve[-1].value == pytest.approx(results["privacy"]["epsilon"])
    numbers = {
        key: value
        for key, value in results["summary"].items()
        if isinstance(value, float) and math.isfinite(value)
    }
    assert {"privacy/epsilon", "utility/auroc", "audit/patient_auc_max"} <= set(numbers)
    logged = {key: run.data.metrics[mlflow_name(key)] for key in numbers}
    assert logged == pytest.approx(numbers)
    artifacts = _artifacts(client, run.info.run_id)
    assert {"report.md", "results.json", "patient_risk.csv", "roc.png", "config.json"} <= artifacts
