"""Small synthetic EHR tables in the real on-disk formats, for tests, examples and benchmarks.

The tables look like what users bring: a patient id column with several rows per patient, integer
labels, numeric and categorical features with missing values, and subgroup columns. No real
patient is in them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def fake_ehr_table(
    *,
    n_patients: int,
    max_records_per_patient: int = 1,
    n_features: int = 8,
    signal: float = 1.0,
    missing_rate: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """A table of visits: ``patient_id``, ``label``, features ``x0..``, ``site``, ``sex``, ``age``.

    The label follows a logistic model of the numeric features (strength ``signal``), so a
    classifier can learn it; ``site`` is a categorical feature; ``sex`` and ``age`` are subgroup
    columns (``sex`` is rarer for ``"F"`` to give an underrepresented group).

    Args:
        n_patients: Number of patients.
        max_records_per_patient: Each patient gets 1..this many rows (uniformly).
        n_features: Number of numeric features.
        signal: Scale of the true logistic coefficients (0: labels are pure noise).
        missing_rate: Share of numeric values set to NaN.
        seed: Seed.

    Returns:
        The table, one row per record.

    Example:
        >>> table = fake_ehr_table(n_patients=5, max_records_per_patient=3, seed=1)
        >>> table["patient_id"].nunique(), set(table["label"]) <= {0, 1}
        (5, True)
    """
    rng = np.random.default_rng(seed)
    records = rng.integers(1, max_records_per_patient + 1, size=n_patients)
    patient_of_record = np.repeat(np.arange(n_patients), records)
    n_records = len(patient_of_record)
    patient_effect = rng.normal(size=(n_patients, n_features))
    features = patient_effect[patient_of_record] + 0.5 * rng.normal(size=(n_records, n_features))
    coefficients = signal * rng.normal(size=n_features) / np.sqrt(n_features)
    probability = 1 / (1 + np.exp(-(features @ coefficients - 0.5)))
    labels = (rng.random(n_records) < probability).astype(np.int64)
    features[rng.random(features.shape) < missing_rate] = np.nan
    sex = np.where(rng.random(n_patients) < 0.25, "F", "M")
    age = rng.integers(18, 90, size=n_patients)
    table = pd.DataFrame(features, columns=[f"x{j}" for j in range(n_features)])
    table.insert(0, "patient_id", [f"P{p:05d}" for p in patient_of_record])
    table.insert(1, "label", labels)
    table["site"] = rng.choice(["north", "south", "east"], size=n_records)
    table["sex"] = sex[patient_of_record]
    table["age"] = age[patient_of_record]
    return table


def write_fake_ehr_table(path: str | Path, **options) -> Path:
    """Writes `fake_ehr_table` to CSV or Parquet (by suffix) and returns the path."""
    path = Path(path)
    table = fake_ehr_table(**options)
    if path.suffix in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return path
