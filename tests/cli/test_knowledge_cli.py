"""The image and ECG experiments' knowledge curves, end to end through the real CLI (in-process).

Each run is a default experiment pointed at fake data in the real format with a seconds-long
recipe: its report must hold the knowledge table and plot, and the ``all`` level must be the
audit's own per-patient numbers.
"""

from pathlib import Path

import pytest

from dptrain.data.fake import write_fake_medmnist_npz, write_fake_mitbih, write_fake_ptbxl
from dptrain.reporting.plots import KNOWLEDGE_FILE
from dptrain.reporting.results import read_results

from ..conftest import FAST
from .test_main import run_app

SMALL_BATCHES = [o for o in FAST if not o.startswith("train.batch_size")] + ["train.batch_size=8"]


def check_knowledge_report(run_dir: Path, levels: list[str], known: str) -> dict:
    """The report's knowledge section and plot; `all` equals the audit's own numbers."""
    results = read_results(run_dir / "results.json")
    curve = results["audit"]["knowledge"]
    assert [level["level"] for level in curve["levels"]] == levels
    everything, patients = curve["levels"][-1], results["audit"]["patients"]
    assert everything["imputed_features"] == 0
    for key in ("median_auc", "p99_auc", "max_auc"):
        assert everything[key] == patients[key]
    assert everything["rows"][0]["exposed"] == patients["exposed"]
    assert all(level["imputed_features"] > 0 for level in curve["levels"][:-1])
    assert "pool's mean record" in curve["imputation"]
    report = (run_dir / "report.md").read_text()
    assert "## What the attacker knows" in report and known in report
    assert all(f"| {level}" in report for level in levels[:-1])
    assert (run_dir / KNOWLEDGE_FILE).stat().st_size > 0
    return results


@pytest.mark.slow
def test_breastmnist_experiment_on_a_fake_npz_has_the_knowledge_curve(
    monkeypatch, capsys, tmp_path
):
    path = write_fake_medmnist_npz(
        tmp_path / "tiny.npz", n_train=40, n_val=8, n_test=16, size=28, seed=1
    )
    run_dir = tmp_path / "run"
    overrides = ["experiment=breastmnist", f"data.path={path}", "data.name=tiny", *FAST]
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    results = check_knowledge_report(run_dir, ["center:0.5", "lowres:7", "all"], "centre 14×14 px")
    assert results["training"]["frontend"].startswith("scattering2d")


@pytest.mark.slow
def test_ptbxl_experiments_on_fake_ecgs_have_the_knowledge_curve(monkeypatch, capsys, tmp_path):
    root = tmp_path / "ptbxl"
    write_fake_ptbxl(root, n_patients=24, max_ecgs_per_patient=2, seed=4)
    levels = ["leads:I", "leads:I+II+V1", "window:0-2.5", "all"]
    for experiment in ("ptbxl", "ptbxl_scatter1d"):  # lazily imputed; through the front end
        run_dir = tmp_path / experiment
        overrides = [f"experiment={experiment}", f"data.root={root}", *SMALL_BATCHES]
        code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
        assert code == 0, err
        check_knowledge_report(run_dir, levels, "leads I, II, V1")


@pytest.mark.slow
def test_mitbih_experiment_on_fake_beats_has_the_knowledge_curve(monkeypatch, capsys, tmp_path):
    root = tmp_path / "mitdb"
    write_fake_mitbih(root, records=["100", "101", "102", "103"], seconds=30.0, seed=0)
    run_dir = tmp_path / "run"
    overrides = ["experiment=mitbih", f"data.root={root}", "data.max_beats_per_record=40"]
    code, _, err = run_app(monkeypatch, capsys, run_dir, [*overrides, *FAST])
    assert code == 0, err
    check_knowledge_report(run_dir, ["window:0-0.2", "window:0-0.35", "all"], "0–0.2 s")
