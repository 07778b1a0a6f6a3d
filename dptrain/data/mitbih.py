"""MIT-BIH Arrhythmia-style beat data into a `Cohort`: every annotated beat is a record.

Each WFDB record (``<name>.hea`` + signal file + ``<name>.atr`` beat annotations, read with
``wfdb.rdrecord`` / ``wfdb.rdann``) is filtered and resampled as a whole, then cut into windows
around the annotated R peaks. Beat symbols map to the AAMI EC57 classes (N, S, V, F, Q) or to
normal (N) vs abnormal (S, V, F, Q); non-beat annotations (rhythm changes, noise, comments) are
ignored. Every beat carries its record's patient: one record is one patient, except where
``patient_map`` says otherwise. In the full 48-record database records 201 and 202 come from the
same subject, and the default map puts them under one patient (``201``).

Patients here contribute thousands of records (beats), the hard case for patient-level privacy:
a record-level ε protects one heartbeat, not a person, and the cohort's notes say so. A
patient-level split and audit need at least ``MIN_PATIENTS`` patients; with fewer (the shared
copy holds record 100 alone) the loader, unless told to fail, splits each recording into
contiguous time segments and uses those as the units of the split and the audit, with a loud
note that no patient-level claim applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from dptrain.data.cohort import Cohort
from dptrain.data.locate import shared_data_path
from dptrain.data.medmnist import stratified_subsample
from dptrain.data.preprocessing import Standardize
from dptrain.data.signals import check_signal_options, describe, preprocess
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
# AAMI EC57 grouping of the MIT-BIH beat annotation symbols.
AAMI_BY_SYMBOL = {
    **dict.fromkeys(("N", "L", "R", "e", "j"), "N"),
    **dict.fromkeys(("A", "a", "J", "S"), "S"),
    **dict.fromkeys(("V", "E"), "V"),
    "F": "F",
    **dict.fromkeys(("/", "f", "Q"), "Q"),
}
CLASS_CHOICES = ("aami", "binary")
BAD_RECORD_CHOICES = ("error", "skip")
FEW_PATIENTS_CHOICES = ("segments", "error")
SAME_SUBJECT = {"202": "201"}  # MIT-BIH: records 201 and 202 are one subject
MIN_PATIENTS = 3  # fewest patients a patient-level train/test split can hold out from
DOWNLOAD_HINT = "https://physionet.org/content/mitdb/"


@dataclass
class MITBIHDataConfig:
    """Where the beat-annotated records are and how to cut and label the beats.

    Attributes:
        root: Folder of WFDB records with ``.atr`` annotations.
        name: Name of the data set in reports.
        records: Record names to read; empty reads every ``*.hea`` that has a ``.atr``.
        leads: Signal names to keep (e.g. ``[MLII]``, in this order); empty keeps every signal
            (then all records must have the same number).
        window_seconds: ``[before, after]`` the R peak; beats whose window leaves the recording
            are dropped (counted in the notes).
        classes: ``aami`` (N, S, V, F, Q; classes without any beat are left out) or ``binary``
            (normal N vs abnormal S, V, F, Q).
        patient_map: Optional CSV with columns ``record`` and ``patient``; by default every
            record is its own patient, except 202, which is patient 201.
        max_beats_per_record: 0 for every beat, else a seeded subsample of this many per record,
            stratified by class.
        seed: Seed of the subsample.
        on_bad_record: ``error`` or ``skip`` (drop the record, count it in the notes).
        few_patients: What to do with fewer than 3 patients: ``segments`` (use contiguous
            ``segment_seconds`` segments as units, with a note that patient-level claims do not
            apply) or ``error``.
        segment_seconds: Length of those segments.
        resample_hz: 0 keeps the recorded rate (360 Hz in MIT-BIH), else resample to this rate.
        bandpass_hz: ``[low, high]`` zero-phase Butterworth band-pass, or ``[]`` for none.
        filter_order: Butterworth order of the band-pass.
    """

    root: str = ""
    name: str = "mitbih"
    records: list[str] = field(default_factory=list)
    leads: list[str] = field(default_factory=lambda: ["MLII"])
    window_seconds: list[float] = field(default_factory=lambda: [0.25, 0.45])
    classes: str = "aami"
    patient_map: str = ""
    max_beats_per_record: int = 0
    seed: int = 0
    on_bad_record: str = "error"
    few_patients: str = "segments"
    segment_seconds: float = 120.0
    resample_hz: float = 0.0
    bandpass_hz: list[float] = field(default_factory=lambda: [0.5, 40.0])
    filter_order: int = 2

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("classes", self.classes, CLASS_CHOICES),
            ("on_bad_record", self.on_bad_record, BAD_RECORD_CHOICES),
            ("few_patients", self.few_patients, FEW_PATIENTS_CHOICES),
        ):
            if value not in choices:
                raise ConfigError(f"data.{name} must be one of {list(choices)}, got {value!r}")
        if len(self.window_seconds) != 2 or min(self.window_seconds) < 0:
            raise ConfigError(
                "data.window_seconds must be [before, after] the R peak, both >= 0, got "
                f"{list(self.window_seconds)}"
            )
        if sum(self.window_seconds) <= 0:
            raise ConfigError("data.window_seconds must span a positive time")
        if self.max_beats_per_record < 0:
            raise ConfigError(
                f"data.max_beats_per_record must be >= 0 (0 = all), got {self.max_beats_per_record}"
            )
        if self.segment_seconds <= 0:
            raise ConfigError(f"data.segment_seconds must be > 0, got {self.segment_seconds}")
        check_signal_options(
            resample_hz=self.resample_hz,
            bandpass_hz=list(self.bandpass_hz),
            filter_order=self.filter_order,
        )

    def load(self) -> Cohort:
        """Reads the records and returns the beat cohort (see `load_mitbih`)."""
        return load_mitbih(self)


@dataclass(frozen=True)
class _Beats:
    """The beats of one record."""

    windows: np.ndarray  # (n_beats, leads, window) float32
    classes: np.ndarray  # (n_beats,) str AAMI class
    seconds: np.ndarray  # (n_beats,) float64 time of the R peak
    rate: float
    lost_at_edges: int
    age: str
    sex: str


def load_mitbih(config: MITBIHDataConfig) -> Cohort:
    """Reads beat-annotated WFDB records into a cohort of ``(leads, window)`` beats.

    Args:
        config: Where the records are, which leads, the window and the classes.

    Returns:
        The cohort: one record per beat, patients from the record (or ``patient_map``), patient
        attributes ``age`` and ``sex`` from the header comment (``# 69 M ...``), record attribute
        ``record``; `Standardize` (per lead, fitted on each training split).

    Raises:
        DataError: For a missing folder or record, a record whose signal cannot be read, a
            missing lead or a lead count that differs between records, an annotation file
            without beats, or fewer than 3 patients with ``few_patients=error``; each message
            names the record and the fix.

    Example:
        >>> import tempfile
        >>> from dptrain.data.fake import write_fake_mitbih
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = write_fake_mitbih(folder, records=["100", "101", "102"], seconds=20, seed=0)
        ...     cohort = MITBIHDataConfig(root=folder).load()
        >>> cohort.features.shape[1:], cohort.n_patients, cohort.class_names
        ((1, 252), 3, ('N', 'S', 'V'))
    """
    root = Path(config.root or shared_data_path("ecg/mitdb"))
    names = _record_names(root, config)
    patient_of = _patient_map(root, names, config)
    notes: list[str] = []
    skipped: list[str] = []
    by_record: dict[str, _Beats] = {}
    n_leads = None
    for name in names:
        try:
            beats = _read_record(root, name, config)
            if n_leads is not None and beats.windows.shape[1] != n_leads:
                raise DataError(
                    f"record {name}: {beats.windows.shape[1]} leads, the first record "
                    f"{n_leads}; set data.leads to named leads every record has (e.g. [MLII]) "
                    "or drop the record from data.records"
                )
        except DataError as error:
            if config.on_bad_record == "error":
                raise
            skipped.append(f"{name} ({str(error).split(';')[0]})")
            continue
        n_leads = beats.windows.shape[1]
        by_record[name] = beats
    if skipped:
        notes.append(
            f"{len(skipped)} records were skipped (data.on_bad_record=skip): {'; '.join(skipped)}"
        )
    if not by_record:
        raise DataError(f"data.root={root}: no usable record is left (see the skipped records)")
    windows, classes, record_names, patients, seconds = [], [], [], [], []
    lost = 0
    for name, beats in by_record.items():
        kept = np.arange(len(beats.classes))
        if config.max_beats_per_record and config.max_beats_per_record < len(kept):
            kept = stratified_subsample(
                beats.classes, size=config.max_beats_per_record, seed=config.seed
            )
        windows.append(beats.windows[kept])
        classes.append(beats.classes[kept])
        seconds.append(beats.seconds[kept])
        record_names += [name] * len(kept)
        patients += [patient_of[name]] * len(kept)
        lost += beats.lost_at_edges
    features = np.concatenate(windows)
    beat_classes = np.concatenate(classes)
    beat_seconds = np.concatenate(seconds)
    patient_ids = np.array(patients)
    record_names = np.array(record_names)
    labels, class_names, task, class_note = _labels(beat_classes, config.classes)
    notes.append(class_note)
    if lost:
        notes.append(f"{lost} beats too close to a recording's start or end were dropped.")
    if config.max_beats_per_record:
        notes.append(
            f"A seeded subsample of at most {config.max_beats_per_record} beats per record, "
            "stratified by class, is used (data.max_beats_per_record)."
        )
    notes.append(
        describe(
            rate_hz=_recorded_rate(root, next(iter(by_record))),
            resample_hz=config.resample_hz,
            bandpass_hz=list(config.bandpass_hz),
            order=config.filter_order,
        )
    )
    if {"201", "202"} <= set(by_record) and not config.patient_map:
        notes.append(
            "Records 201 and 202 come from one subject (MIT-BIH documentation) and are one "
            "patient here."
        )
    attributes = {
        "age": {patient_of[n]: by_record[n].age for n in by_record},
        "sex": {patient_of[n]: by_record[n].sex for n in by_record},
    }
    n_patients = len(set(patients))
    beats_per_patient = pd.Series(patient_ids).value_counts()
    if n_patients < MIN_PATIENTS:
        if config.few_patients == "error":
            raise DataError(
                f"data.root={root}: {n_patients} patient(s); a patient-level split and audit "
                f"need at least {MIN_PATIENTS}. Add records (the full MIT-BIH database has 47 "
                "subjects) or set data.few_patients=segments"
            )
        segment = np.floor(beat_seconds / config.segment_seconds).astype(np.int64)
        units = np.array([f"{p}/segment{s:03d}" for p, s in zip(patient_ids, segment)])
        attributes = {
            key: {unit: values[p] for unit, p in zip(units, patient_ids)}
            for key, values in attributes.items()
        }
        notes.insert(
            0,
            f"WARNING: only {n_patients} patient(s) ({', '.join(sorted(set(patients)))}). A "
            f"patient-level split and audit need at least {MIN_PATIENTS} patients, so the units "
            f"of the split and of the audit here are {len(set(units))} contiguous "
            f"{config.segment_seconds:g} s segments of the recording(s), NOT patients: the "
            "test set is other minutes of the same person(s), every 'patient' number in this "
            "report is about a segment, and no patient-level privacy claim applies (for the "
            f"person, all {len(features)} beats are one group). Use more records for a "
            "patient-level audit.",
        )
        patient_ids = units
    notes.append(
        f"Each beat is a record: patients contribute up to {int(beats_per_patient.max())} beats. "
        "A record-level ε protects one heartbeat, not a person; for a patient, only the "
        "patient-level bound of the audit (k = the largest number of beats per unit) applies, "
        "and at thousands of beats it is vacuous."
    )
    log.info("MIT-BIH: %d beats of %d patients", len(features), n_patients)
    return Cohort.from_records(
        name=config.name,
        features=features,
        labels=labels,
        patient_ids=patient_ids,
        attributes=attributes,
        class_names=class_names,
        task=task,
        record_attributes={"record": record_names},
        preprocessing=Standardize(),
        notes=tuple(notes),
    )


def _record_names(root: Path, config: MITBIHDataConfig) -> list[str]:
    if not root.is_dir():
        raise DataError(
            f"data.root: {root} is not a folder; download the MIT-BIH Arrhythmia Database "
            f"({DOWNLOAD_HINT}) and set data.root to it"
        )
    if config.records:
        names = [str(name) for name in config.records]
        for name in names:
            if not (root / f"{name}.hea").is_file():
                raise DataError(
                    f"record {name}: {root / name}.hea not found; it is listed in data.records "
                    "but missing on disk: copy it into data.root or remove it from data.records"
                )
        return names
    names = sorted(p.stem for p in root.glob("*.hea") if p.with_suffix(".atr").is_file())
    if not names:
        raise DataError(
            f"data.root: {root} holds no record with both .hea and .atr files; point "
            "data.root at the MIT-BIH folder"
        )
    return names


def _patient_map(root: Path, names: list[str], config: MITBIHDataConfig) -> dict[str, str]:
    if not config.patient_map:
        return {name: SAME_SUBJECT.get(name, name) for name in names}
    path = Path(config.patient_map)
    if not path.is_file():
        raise DataError(f"data.patient_map: {path} not found")
    table = pd.read_csv(path, dtype=str)
    if not {"record", "patient"} <= set(table.columns):
        raise DataError(
            f"data.patient_map: {path} needs columns record and patient, has {list(table.columns)}"
        )
    mapping = dict(zip(table["record"].str.strip(), table["patient"].str.strip()))
    missing = [name for name in names if name not in mapping]
    if missing:
        raise DataError(
            f"data.patient_map: record {missing[0]} has no row in {path}; add `{missing[0]},"
            "<patient>`"
        )
    return {name: mapping[name] for name in names}


def _read_record(root: Path, name: str, config: MITBIHDataConfig) -> _Beats:
    """Filters and resamples one recording, then cuts its annotated beats."""
    path = str(root / name)
    if not (root / f"{name}.atr").is_file():
        raise DataError(
            f"record {name}: {path}.atr not found; beat data need the reference annotations "
            "(.atr): copy them, or remove the record from data.records"
        )
    try:
        record = wfdb.rdrecord(path)
        annotation = wfdb.rdann(path, "atr")
    except (ValueError, OSError, IndexError) as error:
        raise DataError(
            f"record {name}: wfdb cannot read {path} ({error}); the header and the signal file "
            "disagree (e.g. a truncated download): download the record again, or set "
            "data.on_bad_record=skip"
        ) from error
    signal = record.p_signal
    if signal is None or signal.shape[0] != record.sig_len:
        raise DataError(
            f"record {name}: {path}.hea announces {record.sig_len} samples, "
            f"{0 if signal is None else signal.shape[0]} were read; download it again"
        )
    lead_names = list(record.sig_name)
    if config.leads:
        missing = [lead for lead in config.leads if lead not in lead_names]
        if missing:
            raise DataError(
                f"record {name} has no lead {missing[0]!r} (its leads: {', '.join(lead_names)}); "
                "change data.leads or drop the record from data.records"
            )
        signal = signal[:, [lead_names.index(lead) for lead in config.leads]]
    symbols = np.asarray(annotation.symbol)
    is_beat = np.isin(symbols, list(AAMI_BY_SYMBOL))
    if not is_beat.any():
        raise DataError(
            f"record {name}: {path}.atr has no beat annotations ({len(symbols)} non-beat "
            "annotations); use the reference beat annotations (atr) or remove the record"
        )
    rate = float(record.fs)
    signals, out_rate = preprocess(
        np.nan_to_num(signal.T),
        rate_hz=rate,
        resample_hz=config.resample_hz,
        bandpass_hz=list(config.bandpass_hz),
        order=config.filter_order,
    )
    peaks = np.round(annotation.sample[is_beat] * out_rate / rate).astype(np.int64)
    before = round(config.window_seconds[0] * out_rate)
    after = round(config.window_seconds[1] * out_rate)
    inside = (peaks - before >= 0) & (peaks + after <= signals.shape[1])
    offsets = np.arange(-before, after)
    windows = signals[:, peaks[inside, None] + offsets].transpose(1, 0, 2)
    age, sex = _demographics(record.comments)
    return _Beats(
        windows=np.ascontiguousarray(windows, dtype=np.float32),
        classes=np.array([AAMI_BY_SYMBOL[s] for s in symbols[is_beat][inside]]),
        seconds=peaks[inside] / out_rate,
        rate=out_rate,
        lost_at_edges=int((~inside).sum()),
        age=age,
        sex=sex,
    )


def _recorded_rate(root: Path, name: str) -> float:
    return float(wfdb.rdheader(str(root / name)).fs)


def _demographics(comments: list[str]) -> tuple[str, str]:
    """Age band and sex from the MIT-BIH header comment ``# <age> <M|F> ...``."""
    for comment in comments:
        parts = comment.split()
        if len(parts) >= 2 and parts[1] in ("M", "F") and (parts[0].isdigit() or parts[0] == "?"):
            sex = "male" if parts[1] == "M" else "female"
            if not parts[0].isdigit():
                return "missing", sex
            age = int(parts[0])
            low = 20 * (age // 20)
            return f"{low}-{low + 20}", sex
    return "missing", "missing"


def _labels(classes: np.ndarray, scheme: str) -> tuple[np.ndarray, tuple[str, ...], str, str]:
    if scheme == "binary":
        labels = (classes != "N").astype(np.int64)
        return (
            labels,
            ("normal", "abnormal"),
            "binary",
            "Beats are labelled normal (AAMI N) vs abnormal (S, V, F, Q).",
        )
    present = tuple(c for c in AAMI_CLASSES if (classes == c).any())
    counts = ", ".join(f"{c} {int((classes == c).sum())}" for c in present)
    absent = [c for c in AAMI_CLASSES if c not in present]
    note = f"AAMI beat classes: {counts}."
    if absent:
        note += f" Classes without any beat here ({', '.join(absent)}) are left out."
    labels = np.array([present.index(c) for c in classes], np.int64)
    return labels, present, ("binary" if len(present) == 2 else "multiclass"), note
