"""No feature value of a patient is written out: a planted patient's values appear in no file.

A continuous column used as a subgroup without bins once put every patient's exact value beside
their id in ``patient_risk.csv``, ``report.md``, ``results.json`` and the tracker's copies. Here
one patient gets values no one else has, the column is both a feature and a subgroup, and every
file under the run directory (the CSV tracker writes inside it) and W&B's offline folders is
scanned for the values' text and binary forms.
"""

import struct
from pathlib import Path

import numpy as np
import pytest

from dptrain.data.fake import fake_ehr_table
from dptrain.reporting.results import read_results

from .test_main import run_app

PLANTED_BMI = 531441.729  # a continuous subgroup column that is also a feature
PLANTED_X0 = 271828.182  # an ordinary feature
PLANTED_PATIENT = 7


def _forms(value: float) -> list[bytes]:
    """How a value could be written: as text in several precisions, and as float32/float64."""
    texts = {repr(value), f"{value:g}", f"{value:.2f}", f"{value:.1f}", str(int(value))}
    texts |= {f"{value:.5e}", f"{value:.3e}", str(round(value))}
    binary = [struct.pack(f"{order}{kind}", value) for order in "<>" for kind in "fd"]
    return [text.encode() for text in texts] + binary


def _planted_table(tmp_path: Path) -> Path:
    table = fake_ehr_table(n_patients=120, max_records_per_patient=2, seed=5)
    rng = np.random.default_rng(5)
    table["bmi"] = rng.normal(27, 4, len(table)).round(1)
    planted = table["patient_id"] == table["patient_id"].unique()[PLANTED_PATIENT]
    table.loc[planted, "bmi"] = PLANTED_BMI
    table.loc[planted, "x0"] = PLANTED_X0
    path = tmp_path / "planted.csv"
    table.to_csv(path, index=False)
    return path


def _scan(folders: list[Path]) -> list[str]:
    """Every (file, form) where a planted value occurs."""
    forms = _forms(PLANTED_BMI) + _forms(PLANTED_X0)
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                found += [f"{path}: {form!r}" for form in forms if form in content]
    return found


def _overrides(path: Path) -> list[str]:
    return [
        "data=table",
        f"data.path={path}",
        "data.id_column=patient_id",
        "data.label_columns=[label]",
        "data.exclude_columns=[sex,age]",
        "data.subgroup_columns=[sex,bmi]",
        "train.epochs=2",
        "train.batch_size=32",
        "audit.num_models=4",
        "audit.rmia_num_population=100",
        "audit.workers=1",
    ]


@pytest.mark.slow
def test_a_planted_patients_values_appear_in_no_run_or_tracker_file(monkeypatch, capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run_app(
        monkeypatch, capsys, run_dir, [*_overrides(_planted_table(tmp_path)), "tracker=csv"]
    )
    assert code == 0, err
    assert repr(PLANTED_BMI).encode() in _planted_table(tmp_path).read_bytes()  # scan can hit
    assert (run_dir / "tracker" / "patient_risk.csv").is_file()  # the tracker's copy is scanned
    assert _scan([run_dir]) == []
    assert "531441" not in out + err
    results = read_results(run_dir / "results.json")
    bands = set(results["utility"]["subgroups"]["bmi"])
    assert 2 <= len(bands) <= 5 and any(band.startswith("≥") for band in bands)
    notes = results["data"]["cohort"]["notes"]
    assert any("'bmi' is continuous" in note and "quartiles" in note for note in notes)
    report = (run_dir / "report.md").read_text()
    assert "'bmi' is continuous" in report and "**By bmi**" in report


@pytest.mark.slow
def test_nor_in_the_offline_wandb_folders(monkeypatch, capsys, tmp_path):
    pytest.importorskip("wandb")
    home = tmp_path / "home"  # W&B stages artifacts under ~/.local/share/wandb: scan it too
    for variable in ("HOME", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(home / variable.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    code, _, err = run_app(
        monkeypatch,
        capsys,
        run_dir,
        [*_overrides(_planted_table(tmp_path)), "tracker=wandb", "audit=none"],
    )
    assert code == 0, err
    assert any(run_dir.glob("wandb/*/run-*.wandb"))  # W&B wrote its offline run here
    assert _scan([run_dir, home]) == []
