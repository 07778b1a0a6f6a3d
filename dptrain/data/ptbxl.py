"""PTB-XL (Wagner et al. 2020) into a `Cohort`: 12-lead 10 s ECGs, several per patient.

The layout is PhysioNet's: ``ptbxl_database.csv`` (one row per ECG: ``ecg_id``, ``patient_id``,
``age``, ``sex``, ``site``, ``device``, ``scp_codes``, ``strat_fold``, ``filename_lr`` /
``filename_hr``), ``scp_statements.csv`` (one row per SCP code) and the WFDB records under
``records100/`` (100 Hz) or ``records500/`` (500 Hz), read with ``wfdb.rdsamp``.

Labels follow helme/ecg_ptbxl_benchmarking (Strodthoff et al. 2020): every SCP code of an ECG
whose statement has ``diagnostic == 1`` maps to its ``diagnostic_class``, giving the multi-label
superclasses NORM, MI, STTC, CD, HYP (``task=superclass``), or normal vs abnormal
(``task=binary``: abnormal when any of MI, STTC, CD, HYP is present). ECGs with no diagnostic
superclass are dropped and counted in the cohort's notes. The patient is ``patient_id``; PTB-XL
puts all ECGs of a patient in one ``strat_fold``, which the official split (folds 1-8 train, 9
val, 10 test) relies on and this loader checks.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from dptrain.data.cohort import Cohort
from dptrain.data.locate import shared_data_path
from dptrain.data.preprocessing import Standardize
from dptrain.data.signals import check_signal_options, describe, preprocess
from dptrain.data.subgroups import subgroup_bands
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
TASKS = ("superclass", "binary")
SPLIT_CHOICES = ("patient", "official")
BAD_RECORD_CHOICES = ("error", "skip")
SAMPLING_RATES = {100: "filename_lr", 500: "filename_hr"}
OFFICIAL_FOLDS = {**{fold: "train" for fold in range(1, 9)}, 9: "val", 10: "test"}
SEX_NAMES = {"0": "male", "1": "female"}  # PTB-XL: sex 0 = male, 1 = female
AGE_OVER_89 = 300  # PTB-XL stores ages above 89 as 300 (HIPAA)
REQUIRED_COLUMNS = ("patient_id", "scp_codes", "strat_fold", "age", "sex")
DOWNLOAD_HINT = "https://physionet.org/content/ptb-xl/"


@dataclass
class PTBXLDataConfig:
    """Where PTB-XL is and how to turn it into a cohort.

    Attributes:
        root: Folder holding ``ptbxl_database.csv``, ``scp_statements.csv`` and ``records100/``
            (or ``records500/``).
        name: Name of the data set in reports.
        sampling_rate: 100 (``records100``, ``filename_lr``) or 500 (``records500``).
        task: ``superclass`` (multi-label NORM, MI, STTC, CD, HYP) or ``binary`` (normal vs
            abnormal).
        split: ``patient`` (our seeded patient-level split) or ``official`` (``strat_fold`` 1-8
            train, 9 val, 10 test).
        age_bins: Edges of the age bands used as subgroups (ages above 89 are stored as 300 by
            PTB-XL and count as 90).
        max_records: 0 for every ECG, else a seeded subsample of whole patients with at most this
            many ECGs in all.
        seed: Seed of the subsample.
        on_bad_record: ``error`` (stop at the first bad ECG) or ``skip`` (drop it, count it in
            the notes).
        resample_hz: 0 keeps the recorded rate, else resample every ECG to this rate.
        bandpass_hz: ``[low, high]`` zero-phase Butterworth band-pass, or ``[]`` for none.
        filter_order: Butterworth order of the band-pass.
    """

    root: str = ""
    name: str = "ptbxl"
    sampling_rate: int = 100
    task: str = "superclass"
    split: str = "patient"
    age_bins: list[float] = field(default_factory=lambda: [0.0, 40.0, 60.0, 80.0, 120.0])
    max_records: int = 0
    seed: int = 0
    on_bad_record: str = "error"
    resample_hz: float = 0.0
    bandpass_hz: list[float] = field(default_factory=lambda: [0.5, 40.0])
    filter_order: int = 2

    def __post_init__(self) -> None:
        if self.sampling_rate not in SAMPLING_RATES:
            raise ConfigError(
                f"data.sampling_rate must be one of {sorted(SAMPLING_RATES)}, got "
                f"{self.sampling_rate}"
            )
        for name, value, choices in (
            ("task", self.task, TASKS),
            ("split", self.split, SPLIT_CHOICES),
            ("on_bad_record", self.on_bad_record, BAD_RECORD_CHOICES),
        ):
            if value not in choices:
                raise ConfigError(f"data.{name} must be one of {list(choices)}, got {value!r}")
        if self.max_records < 0:
            raise ConfigError(f"data.max_records must be >= 0 (0 = all), got {self.max_records}")
        if len(self.age_bins) < 2 or list(self.age_bins) != sorted(self.age_bins):
            raise ConfigError(
                f"data.age_bins must be at least two increasing edges, got {list(self.age_bins)}"
            )
        check_signal_options(
            resample_hz=self.resample_hz,
            bandpass_hz=list(self.bandpass_hz),
            filter_order=self.filter_order,
        )

    def load(self) -> Cohort:
        """Reads the database and returns its cohort (see `load_ptbxl`)."""
        return load_ptbxl(self)


def load_ptbxl(config: PTBXLDataConfig) -> Cohort:
    """Reads PTB-XL into a cohort of float32 ``(12, samples)`` ECGs, one patient per patient_id.

    Args:
        config: Where the files are and how to label, split and filter them.

    Returns:
        The cohort: patient attributes ``age`` (banded) and ``sex``; record attributes ``site``,
        ``device`` and ``strat_fold``; `Standardize` (per lead, fitted on each training split);
        ``official_split`` when ``config.split == "official"``; notes on dropped ECGs and the
        filters.

    Raises:
        DataError: For a missing file or column, an SCP code absent from
            ``scp_statements.csv``, a record missing on disk or unreadable, records whose lead
            count, length or rate differ, or a patient spread over several folds; each message
            names the ECG and the fix.

    Example:
        >>> import tempfile
        >>> from dptrain.data.fake import write_fake_ptbxl
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = write_fake_ptbxl(folder, n_patients=6, max_ecgs_per_patient=2, seed=0)
        ...     cohort = PTBXLDataConfig(root=folder).load()
        >>> cohort.features.shape[1:], cohort.task, cohort.class_names
        ((12, 1000), 'multilabel', ('NORM', 'MI', 'STTC', 'CD', 'HYP'))
    """
    root = Path(config.root or shared_data_path("ecg/ptbxl"))
    database, statements = _read_tables(root)
    _check_folds(database)
    notes: list[str] = []
    skipped: list[str] = []
    superclasses = []
    for ecg_id, codes in database["scp_codes"].items():
        try:
            superclasses.append(_superclasses(ecg_id, codes, statements))
        except DataError:
            if config.on_bad_record == "error":
                raise
            superclasses.append(None)
            skipped.append(f"ECG {ecg_id} (unknown SCP code)")
    database["superclasses"] = superclasses
    database = database[database["superclasses"].notna()]
    without = database["superclasses"].map(len) == 0
    if without.any():
        notes.append(
            f"{int(without.sum())} of {len(database)} ECGs have no diagnostic superclass (no SCP "
            "code with diagnostic == 1) and were dropped, as in the PTB-XL benchmark."
        )
    database = database[~without]
    if config.max_records and config.max_records < len(database):
        database = _subsample_patients(database, config.max_records, config.seed)
        notes.append(
            f"A seeded subsample of whole patients, {len(database)} ECGs (data.max_records="
            f"{config.max_records}), is used."
        )
    signals, kept, rate = _read_signals(root, database, config, skipped)
    database = database.loc[kept]
    if skipped:
        notes.append(
            f"{len(skipped)} ECGs were skipped as unreadable or inconsistent "
            f"(data.on_bad_record=skip): {', '.join(skipped[:5])}"
            + (", ..." if len(skipped) > 5 else "")
        )
    if database.empty:
        raise DataError(f"data.root={root}: no usable ECG is left (see the skipped records)")
    labels, class_names, task = _labels(database, config.task)
    patient_ids = database["patient_id"].to_numpy()
    per_patient = database.groupby("patient_id", sort=False).first()
    ages = per_patient["age"].where(per_patient["age"] != AGE_OVER_89, 90.0)
    age_bands = subgroup_bands(ages, list(config.age_bins), "age")
    sex = per_patient["sex"].map(lambda v: SEX_NAMES.get(_code(v), "unknown"))
    notes += [
        describe(
            rate_hz=config.sampling_rate,
            resample_hz=config.resample_hz,
            bandpass_hz=list(config.bandpass_hz),
            order=config.filter_order,
        ),
        f"Each patient contributes up to {int(database['patient_id'].value_counts().max())} "
        "ECGs; a record-level ε protects one ECG, and the patient-level bound of the audit "
        "covers a patient's whole set of ECGs. Age subgroups use the age at the patient's first "
        "ECG in the file.",
    ]
    log.info("PTB-XL: %d ECGs of %d patients at %g Hz", len(signals), len(per_patient), rate)
    return Cohort.from_records(
        name=config.name,
        features=signals,
        labels=labels,
        patient_ids=patient_ids,
        attributes={
            "age": dict(zip(per_patient.index, age_bands)),
            "sex": dict(zip(per_patient.index, sex)),
        },
        class_names=class_names,
        task=task,
        record_attributes={
            "site": database["site"].map(_code).to_numpy(),
            "device": database["device"].map(lambda v: str(v).strip() or "unknown").to_numpy(),
            "strat_fold": database["strat_fold"].map(_code).to_numpy(),
        },
        preprocessing=Standardize(),
        notes=tuple(notes),
        official_split=(
            {
                patient: OFFICIAL_FOLDS[int(fold)]
                for patient, fold in per_patient["strat_fold"].items()
            }
            if config.split == "official"
            else None
        ),
    )


def _read_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ptbxl_database.csv`` indexed by ecg_id and ``scp_statements.csv`` indexed by code."""
    paths = {name: root / name for name in ("ptbxl_database.csv", "scp_statements.csv")}
    for name, path in paths.items():
        if not path.is_file():
            raise DataError(
                f"data.root: {path} not found; download PTB-XL ({DOWNLOAD_HINT}) and set "
                f"data.root to the folder holding {name} and records100/"
            )
    database = pd.read_csv(paths["ptbxl_database.csv"], index_col="ecg_id")
    missing = [c for c in REQUIRED_COLUMNS if c not in database.columns]
    if missing:
        raise DataError(
            f"{paths['ptbxl_database.csv']} has no column {missing[0]!r}; use the original "
            "PTB-XL ptbxl_database.csv"
        )
    for column in ("site", "device"):
        if column not in database.columns:
            database[column] = "unknown"
    statements = pd.read_csv(paths["scp_statements.csv"], index_col=0)
    if "diagnostic" not in statements.columns or "diagnostic_class" not in statements.columns:
        raise DataError(
            f"{paths['scp_statements.csv']} lacks the diagnostic / diagnostic_class columns; use "
            "the scp_statements.csv shipped with PTB-XL"
        )
    database["patient_id"] = database["patient_id"].map(_code)
    return database, statements


def _superclasses(ecg_id: object, codes: str, statements: pd.DataFrame) -> tuple[str, ...]:
    """The diagnostic superclasses of one ECG's ``scp_codes`` (a dict literal of code → %)."""
    try:
        parsed = ast.literal_eval(codes)
    except (ValueError, SyntaxError) as error:
        raise DataError(
            f"ptbxl_database.csv: ECG {ecg_id} has unreadable scp_codes {codes!r}; it must be a "
            "dict like {'NORM': 100.0}"
        ) from error
    classes = set()
    for code in parsed:
        if code not in statements.index:
            raise DataError(
                f"ptbxl_database.csv: ECG {ecg_id} has SCP code {code!r}, which "
                "scp_statements.csv does not define; use the scp_statements.csv of the same "
                "PTB-XL release, or set data.on_bad_record=skip"
            )
        statement = statements.loc[code]
        if statement["diagnostic"] == 1 and isinstance(statement["diagnostic_class"], str):
            classes.add(statement["diagnostic_class"])
    return tuple(c for c in SUPERCLASSES if c in classes)


def _check_folds(database: pd.DataFrame) -> None:
    """PTB-XL keeps a patient's ECGs in one ``strat_fold``; refuse a file where they are not."""
    folds = database.groupby("patient_id")["strat_fold"].nunique()
    if (folds > 1).any():
        patient = folds.index[np.argmax(folds.to_numpy() > 1)]
        raise DataError(
            f"ptbxl_database.csv: patient {patient} has ECGs in {int(folds[patient])} different "
            "strat_folds; PTB-XL puts each patient in one fold, so this file was altered. Fix "
            "strat_fold or use the original file"
        )
    bad = sorted(set(database["strat_fold"].dropna().astype(int)) - set(OFFICIAL_FOLDS))
    if bad or database["strat_fold"].isna().any():
        raise DataError(
            f"ptbxl_database.csv: strat_fold must be 1..10, found {bad or 'missing values'}"
        )


def _subsample_patients(database: pd.DataFrame, max_records: int, seed: int) -> pd.DataFrame:
    """Whole patients in seeded random order while their ECGs fit in ``max_records``."""
    patients = database["patient_id"].unique()
    order = np.random.default_rng(seed).permutation(len(patients))
    counts = database["patient_id"].value_counts()
    kept, total = [], 0
    for patient in patients[order]:
        if total + counts[patient] <= max_records:
            kept.append(patient)
            total += counts[patient]
    return database[database["patient_id"].isin(kept)]


def _read_signals(
    root: Path, database: pd.DataFrame, config: PTBXLDataConfig, skipped: list[str]
) -> tuple[np.ndarray, list[object], float]:
    """``(n, leads, samples)`` float32 signals of the ECGs that read cleanly, and their ids."""
    column = SAMPLING_RATES[config.sampling_rate]
    if column not in database.columns:
        raise DataError(
            f"ptbxl_database.csv has no {column!r} column for data.sampling_rate="
            f"{config.sampling_rate}; use the original file"
        )
    signals, kept = [], []
    reference: tuple[int, int, tuple[str, ...]] | None = None
    rate = float(config.sampling_rate)
    for ecg_id, relative in database[column].items():
        try:
            signal, shape = _read_one(root, ecg_id, str(relative), config.sampling_rate)
            if reference is None:
                reference = shape
            elif shape != reference:
                raise DataError(_mismatch(ecg_id, relative, shape, reference))
        except DataError:
            if config.on_bad_record == "error":
                raise
            skipped.append(f"ECG {ecg_id}")
            continue
        processed, rate = preprocess(
            signal,
            rate_hz=config.sampling_rate,
            resample_hz=config.resample_hz,
            bandpass_hz=list(config.bandpass_hz),
            order=config.filter_order,
        )
        signals.append(processed)
        kept.append(ecg_id)
    if not signals:
        return np.zeros((0, 12, 0), np.float32), kept, rate
    return np.stack(signals), kept, rate


def _read_one(
    root: Path, ecg_id: object, relative: str, rate: int
) -> tuple[np.ndarray, tuple[int, int, tuple[str, ...]]]:
    """One ECG as ``(leads, samples)`` and its (leads, samples, lead names)."""
    path = root / relative
    for suffix in (".hea", ".dat"):
        if not path.with_name(path.name + suffix).is_file():
            raise DataError(
                f"ECG {ecg_id}: {path}{suffix} is listed in ptbxl_database.csv but missing on "
                f"disk; copy records{rate}/ completely from PhysioNet, or set "
                "data.on_bad_record=skip"
            )
    try:
        signal, fields = wfdb.rdsamp(str(path))
    except (ValueError, OSError, IndexError) as error:
        raise DataError(
            f"ECG {ecg_id}: wfdb cannot read {path} ({error}); the header and the .dat file "
            "disagree (e.g. a truncated download): download the record again, or set "
            "data.on_bad_record=skip"
        ) from error
    if int(fields["fs"]) != rate:
        raise DataError(
            f"ECG {ecg_id}: {path}.hea says {fields['fs']} Hz but data.sampling_rate={rate}; "
            "point the sampling rate at the matching records folder"
        )
    if signal.shape[0] != int(fields["sig_len"]):
        raise DataError(
            f"ECG {ecg_id}: {path}.hea announces {fields['sig_len']} samples, {signal.shape[0]} "
            "were read; download the record again, or set data.on_bad_record=skip"
        )
    signal = np.ascontiguousarray(signal.T, dtype=np.float32)
    return signal, (signal.shape[0], signal.shape[1], tuple(fields["sig_name"]))


def _mismatch(
    ecg_id: object,
    relative: object,
    shape: tuple[int, int, tuple[str, ...]],
    reference: tuple[int, int, tuple[str, ...]],
) -> str:
    what = "leads" if shape[0] != reference[0] or shape[2] != reference[2] else "samples"
    return (
        f"ECG {ecg_id} ({relative}) has {shape[0]} leads x {shape[1]} samples "
        f"({', '.join(shape[2])}), the first ECG {reference[0]} x {reference[1]} "
        f"({', '.join(reference[2])}): every record must have the same {what}; remove it from "
        "ptbxl_database.csv, or set data.on_bad_record=skip"
    )


def _labels(database: pd.DataFrame, task: str) -> tuple[np.ndarray, tuple[str, ...], str]:
    superclasses = database["superclasses"]
    if task == "superclass":
        labels = np.array([[int(c in row) for c in SUPERCLASSES] for row in superclasses])
        return labels.astype(np.int64), SUPERCLASSES, "multilabel"
    abnormal = np.array([any(c != "NORM" for c in row) for row in superclasses], np.int64)
    return abnormal, ("normal", "abnormal"), "binary"


def _code(value: object) -> str:
    """A numeric code as a clean string (``2.0`` → ``"2"``), missing as ``unknown``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or "unknown"
