"""`audit=canary` and `audit=whitebox` from the command line, on a table, images and ECGs."""

from pathlib import Path

import pytest

from dptrain.cli.config import CONFIG_DIR, build_run_config
from dptrain.data.fake import write_fake_medmnist_npz, write_fake_ptbxl
from dptrain.reporting.results import read_results

from ..conftest import FAST, table_overrides
from .test_experiments import REQUIRED
from .test_main import run_app

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("audit", ["canary", "whitebox"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_takes_the_dp_audits(compose_config, experiment, audit):
    run_config, _ = build_run_config(
        compose_config(
            [f"experiment={experiment}", f"audit={audit}", *REQUIRED.get(experiment, [])]
        )
    )
    assert run_config.audit.dp_audit_names == [audit]
    assert not run_config.audit.leave_many_out


def modality_overrides(modality: str, tmp_path: Path, visits_csv: Path) -> list[str]:
    if modality == "table":
        return [*table_overrides(visits_csv), "train.batch_size=32"]
    if modality == "images":
        path = write_fake_medmnist_npz(
            tmp_path / "tinymnist.npz", n_train=60, n_val=10, n_test=30, size=28, seed=1
        )
        return [
            "data=medmnist",
            "data.name=tinymnist",
            f"data.path={path}",
            "model=cnn",
            "model.channels=[4,8]",
            "model.groups=2",
            "train.batch_size=16",
        ]
    root = tmp_path / "ptbxl"
    write_fake_ptbxl(root, n_patients=30, max_ecgs_per_patient=2, seconds=2.0, seed=4)
    return [
        "data=ptbxl",
        f"data.root={root}",
        "model=cnn1d",
        "model.width=4",
        "model.groups=2",
        "train.batch_size=8",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["table", "images", "ecg"])
def test_the_dp_audits_run_on_every_modality_and_stand_beside_the_claim(
    monkeypatch, capsys, tmp_path, visits_csv, modality
):
    run_dir = tmp_path / "run"
    overrides = [
        *FAST,
        *modality_overrides(modality, tmp_path, visits_csv),
        "audit=whitebox",
        "audit.dp_audits=[canary]",
        "audit.num_canaries=10",
        "privacy.epsilon=2",
    ]
    code, out, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    results = read_results(run_dir / "results.json")
    rows = {row["name"]: row for row in results["dp_audits"]}
    assert list(rows) == ["whitebox", "canary"] and results["audit"] is None
    claimed = results["privacy"]["epsilon"]
    for row in rows.values():
        assert row["applicable"] and row["epsilon_accountant"] == claimed
        assert 0 <= row["epsilon_lower_bound"] <= claimed  # fails with probability ≤ 5 % each
    assert rows["whitebox"]["counts"]["canaries"] == 10
    report = (run_dir / "report.md").read_text()
    assert "## Audits of the DP implementation" in report
    assert report.count("consistent with the claimed ε") == 2
    assert "whitebox     ε ≥" in out and "canary       ε ≥" in out


@pytest.mark.slow
def test_the_leave_many_out_table_carries_the_dp_audit_bound(
    monkeypatch, capsys, tmp_path, visits_csv
):
    run_dir = tmp_path / "run"
    overrides = [
        *table_overrides(visits_csv),
        *FAST,
        "audit.dp_audits=[whitebox]",
        "audit.num_canaries=20",
    ]
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    results = read_results(run_dir / "results.json")
    assert results["audit"]["num_models"] == 4 and len(results["dp_audits"]) == 1
    headline = (run_dir / "report.md").read_text().split("## Privacy budget vs measured")[1]
    assert "ε, whitebox audit of the DP implementation" in headline.split("\n\n")[1]
