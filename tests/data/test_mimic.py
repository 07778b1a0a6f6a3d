"""The MIMIC-IV demo admissions loader, on a tiny folder in the demo's own CSV layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dptrain.data.mimic import MIMICDemoDataConfig, admissions_table
from dptrain.errors import ConfigError, DataError


def write_fake_mimic(root: Path, *, iso_times: bool = True, n_patients: int = 12) -> Path:
    """``admissions.csv``, ``patients.csv``, ``diagnoses_icd.csv`` with 1-4 stays per patient."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    patients = pd.DataFrame(
        {
            "subject_id": 1000 + np.arange(n_patients),
            "gender": rng.choice(["F", "M"], n_patients),
            "anchor_age": rng.integers(20, 90, n_patients),
        }
    )
    rows = []
    for subject in patients["subject_id"]:
        for stay in range(int(rng.integers(1, 5))):
            start = pd.Timestamp("2180-01-01") + pd.Timedelta(days=int(rng.integers(0, 900)))
            end = start + pd.Timedelta(hours=int(rng.integers(5, 400)))
            form = "%Y-%m-%d %H:%M:%S" if iso_times else "%m/%d/%y %H:%M"
            rows.append(
                {
                    "subject_id": subject,
                    "hadm_id": subject * 10 + stay,
                    "admittime": start.strftime(form),
                    "dischtime": end.strftime(form),
                    "admission_type": rng.choice(["URGENT", "EW EMER.", "ELECTIVE"]),
                    "admission_location": rng.choice(["TRANSFER", "EMERGENCY ROOM"]),
                    "discharge_location": rng.choice(["HOME", "HOME HEALTH CARE", "SNF", None]),
                    "insurance": rng.choice(["Medicare", "Other"]),
                    "marital_status": rng.choice(["MARRIED", "SINGLE", None]),
                    "hospital_expire_flag": int(rng.random() < 0.2),
                }
            )
    admissions = pd.DataFrame(rows)
    diagnoses = pd.DataFrame({"hadm_id": np.repeat(admissions["hadm_id"], 3), "icd_code": "I10"})
    admissions.to_csv(root / "admissions.csv", index=False)
    patients.to_csv(root / "patients.csv", index=False)
    diagnoses.to_csv(root / "diagnoses_icd.csv", index=False)
    return root


@pytest.mark.parametrize("iso_times", [True, False])
def test_admissions_become_a_multi_record_cohort(tmp_path, iso_times):
    root = write_fake_mimic(tmp_path / "mimic", iso_times=iso_times)
    table = admissions_table(root)
    admissions = pd.read_csv(root / "admissions.csv")
    assert len(table) == len(admissions) and table["n_diagnoses"].eq(3).all()
    assert (table["length_of_stay_days"] > 0).all()  # both time forms parse
    expected_home = admissions["discharge_location"].fillna("").str.startswith("HOME")
    np.testing.assert_array_equal(table["home"].to_numpy(), expected_home.astype(int).to_numpy())
    cohort = MIMICDemoDataConfig(root=str(root)).load()
    assert cohort.n_patients == 12 and cohort.n_records == len(admissions)
    assert cohort.records_per_patient.max() > 1
    assert cohort.class_names == ("other discharge", "discharged home")
    assert {"gender", "anchor_age"} <= set(cohort.attributes)


def test_in_hospital_death_label(tmp_path):
    root = write_fake_mimic(tmp_path / "mimic")
    cohort = MIMICDemoDataConfig(root=str(root), label="died").load()
    expected = pd.read_csv(root / "admissions.csv")["hospital_expire_flag"].sum()
    assert int(cohort.labels.sum()) == expected


def test_missing_files_and_bad_label_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"admissions\.csv not found; put the MIMIC-IV"):
        MIMICDemoDataConfig(root=str(tmp_path)).load()
    with pytest.raises(ConfigError, match=r"data\.label must be one of \['home', 'died'\]"):
        MIMICDemoDataConfig(label="sepsis")
    root = write_fake_mimic(tmp_path / "mimic")
    admissions = pd.read_csv(root / "admissions.csv").drop(columns="dischtime")
    admissions.to_csv(root / "admissions.csv", index=False)
    with pytest.raises(DataError, match=r"admissions\.csv has no column 'dischtime'"):
        admissions_table(root)


def test_the_shared_copy_loads_when_present():
    from dptrain.data.locate import shared_data_path

    root = Path(shared_data_path("ehr/mimic_iv_demo"))
    if not (root / "admissions.csv").is_file():
        pytest.skip(f"MIMIC-IV demo not under {root}")
    cohort = MIMICDemoDataConfig(root=str(root)).load()
    assert (cohort.n_patients, cohort.n_records) == (100, 275)
    assert cohort.records_per_patient.max() == 20
