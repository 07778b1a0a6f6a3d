"""Record-level vs patient-level DP-SGD at the same ε, on two multi-record cohorts.

For each cohort, the same recipe (MLP, ε = 8, an audit of K models) runs once with ε per record
and once with ε per patient (`privacy.unit=patient`); the table gives utility, the ε a patient
actually has, the DP-implied maximum per-patient attack AUC, and the measured per-patient leakage
beside its noise floor. The expected number of records per batch is kept about equal.

Cohorts:
- MIMIC-IV demo admissions (../shared/data/ehr/mimic_iv_demo; 100 patients, 275 admissions; label:
  discharged home). Skipped with a message when the files are absent.
- A generated cohort with a heavy-tailed records-per-patient law (Zipf, up to 50 records).

    python experiments/patient_vs_record.py                 # ~3 min on 2 cores
    python experiments/patient_vs_record.py --models 64 --plot patient_vs_record.png

The plot puts, per cohort and unit, the test AUROC beside the per-patient picture: the largest
attack AUC the DP guarantee allows a patient, the measured largest and 99th-percentile patient AUC,
and the noise floor those measurements must beat.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dptrain.audit.config import AuditConfig
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.locate import shared_data_path
from dptrain.data.tables import TableDataConfig
from dptrain.models import MLPConfig
from dptrain.pipeline import RunConfig, run
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

RECORDS_PER_BATCH = 64


def mimic_admissions(folder: Path) -> Path | None:
    """One row per admission: demographics, admission facts, diagnosis count; label = home."""
    root = Path(shared_data_path("ehr/mimic_iv_demo"))
    if not (root / "admissions.csv").is_file():
        print(f"MIMIC-IV demo not found under {root}: skipped")
        return None
    admissions = pd.read_csv(root / "admissions.csv")
    patients = pd.read_csv(root / "patients.csv")[["subject_id", "gender", "anchor_age"]]
    diagnoses = pd.read_csv(root / "diagnoses_icd.csv").groupby("hadm_id").size()
    table = admissions.merge(patients, on="subject_id")
    # Times were re-saved as M/D/YY with shifted years: durations within one stay stay right.
    admitted = pd.to_datetime(table["admittime"], format="%m/%d/%y %H:%M")
    discharged = pd.to_datetime(table["dischtime"], format="%m/%d/%y %H:%M")
    table["length_of_stay_days"] = ((discharged - admitted).dt.total_seconds() / 86400).clip(0)
    table["n_diagnoses"] = table["hadm_id"].map(diagnoses).fillna(0)
    table["home"] = table["discharge_location"].fillna("").str.startswith("HOME").astype(int)
    columns = [
        "subject_id", "home", "admission_type", "admission_location", "insurance",
        "marital_status", "gender", "anchor_age", "length_of_stay_days", "n_diagnoses",
    ]  # fmt: skip
    path = folder / "mimic_admissions.csv"
    table[columns].to_csv(path, index=False)
    return path


def cohorts(folder: Path) -> dict[str, TableDataConfig]:
    configs = {}
    mimic = mimic_admissions(folder)
    if mimic is not None:
        configs["MIMIC-IV demo admissions"] = TableDataConfig(
            path=str(mimic),
            id_column="subject_id",
            label_columns=["home"],
            name="mimic_admissions",
            categorical_columns=["admission_type", "admission_location", "insurance"],
        )
    generated = write_fake_ehr_table(
        folder / "heavy_tailed.csv",
        n_patients=600,
        max_records_per_patient=50,
        heavy_tailed=True,
        signal=2.0,
        seed=4,
    )
    configs["generated, Zipf records per patient"] = TableDataConfig(
        path=str(generated),
        id_column="patient_id",
        label_columns=["label"],
        name="heavy_tailed",
        categorical_columns=["site"],
        exclude_columns=["sex", "age"],
    )
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--plot", type=Path, default=Path("patient_vs_record.png"))
    args = parser.parse_args()
    points: list[dict[str, float | str]] = []
    print(
        "| cohort | unit | patients / records (max per patient) | test AUROC | ε per record | "
        "ε per patient | DP max patient AUC | measured max / p99 patient AUC | floor (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, data in cohorts(Path(folder)).items():
            cohort = data.load()
            mean_records = cohort.n_records / cohort.n_patients
            for unit in ("record", "patient"):
                batch = RECORDS_PER_BATCH
                if unit == "patient":
                    batch = max(2, round(RECORDS_PER_BATCH / mean_records))
                config = RunConfig(
                    data=data,
                    model=MLPConfig(hidden=[32]),
                    privacy=PrivacyConfig(epsilon=args.epsilon, unit=unit),
                    train=TrainConfig(epochs=args.epochs, batch_size=batch, lr=0.005),
                    audit=AuditConfig(num_models=args.models),
                )
                with tempfile.TemporaryDirectory() as output_dir:
                    report = run(config, output_dir=output_dir, progress=False)
                audit, spend = report.audit, report.privacy
                per_record = spend.epsilon if unit == "record" else math.nan
                floor = float(np.mean(audit.null_floor.max_auc))
                cells = [
                    name,
                    unit,
                    f"{cohort.n_patients} / {cohort.n_records} "
                    f"({cohort.records_per_patient.max()})",
                    f"{report.utility.overall.auroc:.3f}",
                    "n/a (patient unit)" if math.isnan(per_record) else f"{per_record:.2f}",
                    f"{audit.bounds.patient_epsilon:.2f}",
                    f"{audit.bounds.patient.max_auc:.3f}",
                    f"{audit.patients.max_auc:.3f} / {audit.patients.p99_auc:.3f}",
                    f"{floor:.3f}",
                ]
                print("| " + " | ".join(cells) + " |", flush=True)
                points.append(
                    {
                        "cohort": name,
                        "unit": unit,
                        "auroc": report.utility.overall.auroc,
                        "dp_max": audit.bounds.patient.max_auc,
                        "max": audit.patients.max_auc,
                        "p99": audit.patients.p99_auc,
                        "floor": floor,
                    }
                )
    plot(points, args.plot)
    print(f"plot: {args.plot}")


def plot(points: list[dict[str, float | str]], path: Path) -> None:
    """One panel per cohort: utility and per-patient leakage for record- vs patient-level DP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohorts_seen = list(dict.fromkeys(str(point["cohort"]) for point in points))
    figure, axes = plt.subplots(
        1, len(cohorts_seen), figsize=(5.5 * len(cohorts_seen), 4.2), squeeze=False
    )
    for axis, cohort in zip(axes[0], cohorts_seen):
        rows = [point for point in points if point["cohort"] == cohort]
        x = np.arange(len(rows))
        units = [f"ε per {row['unit']}" for row in rows]
        axis.bar(x - 0.2, [row["dp_max"] for row in rows], 0.35, color="#c7d7ee",
                 label="DP-implied max patient AUC")  # fmt: skip
        axis.plot(x + 0.1, [row["max"] for row in rows], "v", color="#b2182b", ms=9,
                  label="measured max patient AUC")  # fmt: skip
        axis.plot(x + 0.1, [row["p99"] for row in rows], "o", color="#ef8a62",
                  label="measured p99 patient AUC")  # fmt: skip
        axis.plot(x + 0.3, [row["auroc"] for row in rows], "s", color="#1a9850",
                  label="test AUROC (utility)")  # fmt: skip
        for index, row in enumerate(rows):
            axis.hlines(row["floor"], index - 0.4, index + 0.4, colors="grey", linestyles=":",
                        label="noise floor (max)" if index == 0 else None)  # fmt: skip
        axis.set_xticks(x, units)
        axis.set_ylim(0.45, 1.02)
        axis.axhline(0.5, color="black", lw=0.5)
        axis.set_title(cohort, fontsize=10)
        axis.set_ylabel("AUC")
    axes[0][0].legend(fontsize=7, loc="lower left")
    figure.suptitle("Same ε, record- vs patient-level DP-SGD", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
