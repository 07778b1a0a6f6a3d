"""``dptrain --check-data``: what a run would use, in seconds, without training.

Loads the data exactly as a run would (every check a run makes, so a bad file fails here too),
draws the same patient split, and describes it: inputs, column types and one-hot expansions,
excluded columns, missing values, label counts per split, records per patient, subgroups and the
loader's notes and warnings. Only counts and column names are shown, never a patient's values.
"""

from __future__ import annotations

import numpy as np

from dptrain.data.cohort import Cohort
from dptrain.data.splits import official_split, split_by_patient
from dptrain.pipeline import RunConfig


def check_data_lines(config: RunConfig) -> list[str]:
    """The data check's report, one line per fact (the CLI prints it).

    Raises:
        DataError: For anything a run would refuse while loading or splitting the data.
    """
    cohort = config.data.load()
    if getattr(config.data, "split", "patient") == "official":
        split = official_split(cohort)
    else:
        split = split_by_patient(cohort, test_fraction=config.split.test_fraction, seed=config.seed)
    per_patient = cohort.records_per_patient
    lines = [
        f"data         {cohort.name}: {cohort.n_patients} patients, {cohort.n_records} records "
        f"({cohort.task}); records per patient: median {int(np.median(per_patient))}, "
        f"max {int(per_patient.max())}, {int((per_patient > 1).sum())} patients with several",
        f"split        train {split.train.n_patients} patients / {split.train.n_records} records, "
        f"test {split.test.n_patients} patients / {split.test.n_records} records",
        f"labels       all {_label_counts(cohort)}; train {_label_counts(split.train)}; "
        f"test {_label_counts(split.test)}",
        f"inputs       {_inputs(cohort)}",
    ]
    excluded = list(getattr(config.data, "exclude_columns", []))
    if excluded:
        lines.append(f"excluded     {', '.join(map(str, excluded))} (all found in the file)")
    lines += _missing_values(cohort)
    if cohort.attributes or cohort.record_attributes:
        groups = [
            f"{name} ({len(set(values))} values, per patient)"
            for name, values in cohort.attributes.items()
        ] + [
            f"{name} ({len(set(values))} values, per record)"
            for name, values in cohort.record_attributes.items()
        ]
        lines.append(f"subgroups    {', '.join(groups)}")
    for note in cohort.notes:
        label = "warning " if note.startswith("WARNING") else "note    "
        lines.append(f"{label}     {note.removeprefix('WARNING:').strip()}")
    lines.append("check        data ok; nothing was trained (run without --check-data to train)")
    return lines


def _label_counts(cohort: Cohort) -> str:
    summary = cohort.summary()["label_counts"]
    return ", ".join(f"{name}: {count}" for name, count in summary.items())


def _inputs(cohort: Cohort) -> str:
    shape = tuple(cohort.summary()["feature_shape"])
    names = cohort.feature_names
    if names:
        more = f", ... ({len(names)} in all)" if len(names) > 12 else ""
        return f"{len(names)} features: {', '.join(names[:12])}{more}"
    return f"records of shape {shape}, {cohort.summary()['dtype']}"


def _missing_values(cohort: Cohort) -> list[str]:
    """Missing (NaN) counts per table feature; tables refuse infinite values at load."""
    features = cohort.features
    if not isinstance(features, np.ndarray) or features.dtype.kind != "f" or features.ndim != 2:
        return []
    missing = np.isnan(features).sum(axis=0)
    if not missing.any():
        return ["missing      none (no NaN, no inf)"]
    counts = [
        f"{name}: {int(count)}" for name, count in zip(cohort.feature_names, missing) if count
    ]
    return [
        f"missing      {', '.join(counts)} value(s) missing, imputed from the training split; "
        "no inf"
    ]
