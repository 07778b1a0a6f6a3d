"""MIMIC-IV Clinical Database Demo admissions: a real multi-record cohort (100 patients, 275 stays).

One record per hospital admission, joined from the demo's ``hosp`` tables (``admissions.csv``,
``patients.csv``, ``diagnoses_icd.csv``): admission type and location, insurance, marital status,
sex, anchor age, length of stay and number of diagnoses. The label is ``discharged home``
(discharge location starting with HOME) or in-hospital death (``hospital_expire_flag``).
Patients have 1 to 20 admissions, which is what makes the cohort the test bed for patient-level
DP-SGD. The joined table then goes through the table loader and all its checks.

The shared copy's times were re-saved by a spreadsheet as M/D/YY H:MM with shifted years; only
durations within one stay are used, and those stay right.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dptrain.data.cohort import Cohort
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError, DataError

FILES = ("admissions.csv", "patients.csv", "diagnoses_icd.csv")
LABELS = {
    "home": ["other discharge", "discharged home"],
    "died": ["survived", "died in hospital"],
}
FEATURES = [
    "admission_type",
    "admission_location",
    "insurance",
    "marital_status",
    "gender",
    "anchor_age",
    "length_of_stay_days",
    "n_diagnoses",
]
CATEGORICAL = ["admission_type", "admission_location", "insurance", "marital_status", "gender"]


@dataclass
class MIMICDemoDataConfig:
    """The MIMIC-IV demo's admissions as a cohort.

    Attributes:
        root: Folder holding ``admissions.csv``, ``patients.csv`` and ``diagnoses_icd.csv``.
        label: ``home`` (discharged home) or ``died`` (in-hospital death; rare in the demo).
        name: Cohort name in the report.
        subgroup_columns: Patient subgroups of the utility and leakage tables.
        subgroup_bins: Bin edges of numeric subgroup columns.
    """

    root: str = ""
    label: str = "home"
    name: str = "mimic_iv_demo"
    subgroup_columns: list[str] = field(default_factory=lambda: ["gender", "anchor_age"])
    subgroup_bins: dict[str, list[float]] = field(
        default_factory=lambda: {"anchor_age": [18.0, 50.0, 70.0, 120.0]}
    )

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ConfigError(f"data.label must be one of {list(LABELS)}, got {self.label!r}")

    def load(self) -> Cohort:
        """Joins the admissions table and loads it as a table cohort (see `admissions_table`)."""
        table = admissions_table(Path(self.root).expanduser(), label=self.label)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mimic_iv_demo_admissions.csv"
            table.to_csv(path, index=False)
            return TableDataConfig(
                path=str(path),
                name=self.name,
                id_column="subject_id",
                label_columns=[self.label],
                class_names=LABELS[self.label],
                feature_columns=FEATURES,
                categorical_columns=CATEGORICAL,
                subgroup_columns=list(self.subgroup_columns),
                subgroup_bins=dict(self.subgroup_bins),
            ).load()


def admissions_table(root: Path, *, label: str = "home") -> pd.DataFrame:
    """One row per admission: ``subject_id``, the features, and the label column.

    Raises:
        DataError: For a missing file or column.
    """
    for name in FILES:
        if not (root / name).is_file():
            raise DataError(
                f"data.root: {root / name} not found; put the MIMIC-IV Clinical Database Demo's "
                f"hosp tables ({', '.join(FILES)}) in {root} (PhysioNet, ODbL)"
            )
    admissions = pd.read_csv(root / "admissions.csv")
    patients = pd.read_csv(root / "patients.csv")
    diagnoses = pd.read_csv(root / "diagnoses_icd.csv")
    _require(admissions, ["subject_id", "hadm_id", "admittime", "dischtime"], "admissions.csv")
    _require(patients, ["subject_id", "gender", "anchor_age"], "patients.csv")
    _require(diagnoses, ["hadm_id"], "diagnoses_icd.csv")
    table = admissions.merge(
        patients[["subject_id", "gender", "anchor_age"]], on="subject_id", how="left"
    )
    admitted = _times(table["admittime"], "admittime")
    discharged = _times(table["dischtime"], "dischtime")
    table["length_of_stay_days"] = ((discharged - admitted).dt.total_seconds() / 86400).clip(0)
    table["n_diagnoses"] = table["hadm_id"].map(diagnoses.groupby("hadm_id").size()).fillna(0)
    if label == "home":
        _require(admissions, ["discharge_location"], "admissions.csv")
        location = table["discharge_location"].fillna("").astype(str)
        table["home"] = location.str.upper().str.startswith("HOME").astype(int)
    else:
        _require(admissions, ["hospital_expire_flag"], "admissions.csv")
        table["died"] = table["hospital_expire_flag"].astype(int)
    for column in FEATURES:
        if column not in table:
            raise DataError(f"data.root: admissions.csv has no column {column!r}")
    return table[["subject_id", label, *FEATURES]]


def _times(values: pd.Series, column: str) -> pd.Series:
    """Admission times: ISO (the PhysioNet files) or M/D/YY H:MM (the shared spreadsheet copy)."""
    for form in ("ISO8601", "%m/%d/%y %H:%M"):
        try:
            return pd.to_datetime(values, format=form)
        except (ValueError, TypeError):
            continue
    raise DataError(
        f"data.root: admissions.csv column {column!r} holds times in neither ISO form nor "
        "M/D/YY H:MM (e.g. 2180-05-06 22:23:00)"
    )


def _require(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"data.root: {source} has no column {missing[0]!r}")
