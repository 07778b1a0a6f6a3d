"""Small synthetic data in the real on-disk formats, for tests, examples and benchmarks.

The tables look like what users bring: a patient id column with several rows per patient, integer
labels, numeric and categorical features with missing values, and subgroup columns. The images come
as a MedMNIST v2 ``.npz`` or as an image folder with a metadata CSV (several images per patient),
with a planted class signal a small CNN can learn. No real patient is in them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def fake_ehr_table(
    *,
    n_patients: int,
    max_records_per_patient: int = 1,
    heavy_tailed: bool = False,
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
        heavy_tailed: Draw rows per patient from a Zipf law (a = 1.8) capped at the maximum.
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
    if heavy_tailed:  # most patients have one or two records, a few have many (Zipf, a = 1.8)
        records = np.minimum(rng.zipf(1.8, size=n_patients), max_records_per_patient)
    else:
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


def fake_images(
    labels: np.ndarray, *, n_classes: int, size: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    """Noisy uint8 images ``(n, size, size, channels)`` with a bright blob per positive class.

    Class (or label) ``c`` puts a Gaussian blob at its own place on a circle around the centre,
    so the class is learnable from position; multiclass labels ``(n,)`` light one blob, multilabel
    ``(n, C)`` one per positive label. Colour images tint the blob per class.

    Args:
        labels: ``(n,)`` class indices or ``(n, C)`` 0/1 labels.
        n_classes: Number of classes (or labels); fixes where each class's blob sits.
        size: Height and width in pixels.
        channels: 1 (grey) or 3 (RGB).
        rng: Source of the noise.

    Returns:
        ``(n, size, size, channels)`` uint8.
    """
    labels = np.asarray(labels)
    on = labels.astype(bool) if labels.ndim == 2 else np.eye(n_classes, dtype=bool)[labels]
    grid = np.arange(size) + 0.5
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = size / 2 + 0.28 * size * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    width = max(size / 10, 1.0)
    blobs = np.exp(
        -((rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2)
        / (2 * width**2)
    )  # (n_classes, size, size)
    # A fixed brightness per class and channel, the same in every split.
    tints = 0.6 + 0.2 * ((np.arange(n_classes)[:, None] + np.arange(channels)) % 3)
    signal = np.einsum("ns,shw,sc->nhwc", on.astype(np.float64), blobs, tints)
    noise = rng.normal(0.0, 18.0, size=(len(labels), size, size, channels))
    pixels = 50.0 + 150.0 * signal + noise
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def write_fake_medmnist_npz(
    path: str | Path,
    *,
    n_train: int,
    n_val: int,
    n_test: int,
    size: int = 28,
    channels: int = 1,
    n_classes: int = 2,
    multilabel: bool = False,
    flat_labels: bool = False,
    seed: int = 0,
) -> Path:
    """Writes a MedMNIST v2-style ``.npz`` with a learnable planted signal (see `fake_images`).

    The layout is the official one: ``{train,val,test}_images`` uint8 ``(N, H, W)`` (grey) or
    ``(N, H, W, 3)`` (colour) and ``{train,val,test}_labels`` uint8 ``(N, 1)``, ``(N,)`` with
    ``flat_labels``, or ``(N, n_classes)`` 0/1 with ``multilabel``.

    Args:
        path: Where to write the file.
        n_train: Training images.
        n_val: Validation images.
        n_test: Test images.
        size: Height and width.
        channels: 1 (grey) or 3 (RGB).
        n_classes: Classes (or labels, for multilabel).
        multilabel: Independent 0/1 labels instead of one class per image.
        flat_labels: Store single-label arrays as ``(N,)`` instead of ``(N, 1)``.
        seed: Seed.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = write_fake_medmnist_npz(Path(folder) / "toy.npz", n_train=4, n_val=2,
        ...                                    n_test=2, channels=3)
        ...     arrays = np.load(path)
        ...     arrays["train_images"].shape, arrays["test_labels"].shape
        ((4, 28, 28, 3), (2, 1))
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        if multilabel:
            labels = (rng.random((count, n_classes)) < 0.4).astype(np.uint8)
        else:
            labels = rng.integers(0, n_classes, size=count).astype(np.uint8)
        images = fake_images(labels, n_classes=n_classes, size=size, channels=channels, rng=rng)
        arrays[f"{split}_images"] = images[..., 0] if channels == 1 else images
        arrays[f"{split}_labels"] = labels if multilabel or flat_labels else labels[:, None]
    path = Path(path)
    with path.open("wb") as file:
        np.savez_compressed(file, **arrays)
    return path


def write_fake_image_folder(
    root: str | Path,
    *,
    n_patients: int,
    max_images_per_patient: int,
    size: int = 32,
    channels: str = "grey",
    multilabel: bool = False,
    seed: int = 0,
) -> Path:
    """Writes an image folder with a metadata CSV, CheXpert-style: several images per patient.

    Images go to ``root/images/<patient>/<n>.png`` (every third one as JPEG). ``metadata.csv``
    has ``path`` (relative to ``root``), ``patient_id``, ``label`` (0/1; with ``multilabel`` the
    0/1 columns ``effusion`` and ``nodule`` instead), ``sex`` (per patient), ``view`` (per image:
    AP, PA or lateral) and ``age`` (per patient).

    Args:
        root: Folder to write into (created if needed).
        n_patients: Number of patients.
        max_images_per_patient: Each patient gets 1..this many images (uniformly).
        size: Height and width of the written images.
        channels: ``grey`` or ``rgb``.
        multilabel: Two 0/1 label columns instead of one ``label`` column.
        seed: Seed.

    Returns:
        The path of ``metadata.csv``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     table = pd.read_csv(write_fake_image_folder(folder, n_patients=3,
        ...                                                 max_images_per_patient=2))
        ...     table["patient_id"].nunique(), list(table.columns)
        (3, ['path', 'patient_id', 'label', 'sex', 'view', 'age'])
    """
    from PIL import Image  # imported here so the table helpers need no Pillow

    root = Path(root)
    rng = np.random.default_rng(seed)
    images_per_patient = rng.integers(1, max_images_per_patient + 1, size=n_patients)
    patient_of_image = np.repeat(np.arange(n_patients), images_per_patient)
    n_images = len(patient_of_image)
    label_columns = ["effusion", "nodule"] if multilabel else ["label"]
    if multilabel:
        labels = (rng.random((n_images, 2)) < 0.4).astype(np.int64)
    else:
        labels = rng.integers(0, 2, size=n_images)
    images = fake_images(
        labels, n_classes=2, size=size, channels=3 if channels == "rgb" else 1, rng=rng
    )
    paths = []
    for index, patient in enumerate(patient_of_image):
        folder = root / "images" / f"P{patient:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if index % 3 == 2 else ".png"
        file = folder / f"{index}{suffix}"
        pixels = images[index, ..., 0] if channels != "rgb" else images[index]
        Image.fromarray(pixels).save(file)
        paths.append(file.relative_to(root).as_posix())
    sex = np.where(rng.random(n_patients) < 0.4, "F", "M")
    age = rng.integers(20, 90, size=n_patients)
    table = pd.DataFrame({"path": paths, "patient_id": [f"P{p:04d}" for p in patient_of_image]})
    for column, values in zip(label_columns, np.atleast_2d(labels.T)):
        table[column] = values
    table["sex"] = sex[patient_of_image]
    table["view"] = rng.choice(["AP", "PA", "lateral"], size=n_images)
    table["age"] = age[patient_of_image]
    metadata = root / "metadata.csv"
    table.to_csv(metadata, index=False)
    return metadata


# ---------------------------------------------------------------- ECG (WFDB)

FAKE_SCP_STATEMENTS = pd.DataFrame(
    {
        "description": [
            "normal ECG",
            "inferior myocardial infarction",
            "non-diagnostic T abnormalities",
            "left anterior fascicular block",
            "left ventricular hypertrophy",
            "sinus rhythm",
            "low amplitude T-waves",
        ],
        "diagnostic": [1.0, 1.0, 1.0, 1.0, 1.0, np.nan, np.nan],
        "form": [np.nan, np.nan, 1.0, np.nan, np.nan, np.nan, 1.0],
        "rhythm": [np.nan, np.nan, np.nan, np.nan, np.nan, 1.0, np.nan],
        "diagnostic_class": ["NORM", "MI", "STTC", "CD", "HYP", np.nan, np.nan],
        "diagnostic_subclass": ["NORM", "IMI", "STTC", "LAFB/LPFB", "LVH", np.nan, np.nan],
    },
    index=pd.Index(["NORM", "IMI", "NDT", "LAFB", "LVH", "SR", "LOWT"]),
)
FAKE_CODE_OF_CLASS = {"NORM": "NORM", "MI": "IMI", "STTC": "NDT", "CD": "LAFB", "HYP": "LVH"}
PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def fake_ecg(
    *,
    seconds: float,
    rate_hz: float,
    n_leads: int,
    rng: np.random.Generator,
    beat_seconds: np.ndarray | None = None,
    lead_gain: np.ndarray | None = None,
    qrs_width: float = 0.025,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy synthetic ECG ``(samples, leads)`` in mV and its R-peak times in seconds.

    Beats are Gaussian P, QRS and T waves; ``lead_gain`` ``(leads, 3)`` scales the three waves
    per lead (how the loaders' tests plant a class signal); baseline wander and noise are added.
    """
    samples = round(seconds * rate_hz)
    time = np.arange(samples) / rate_hz
    if beat_seconds is None:
        period = rng.uniform(0.7, 1.0)
        beat_seconds = np.arange(rng.uniform(0.2, 0.6), seconds - 0.2, period)
    gain = np.ones((n_leads, 3)) if lead_gain is None else lead_gain
    waves = np.zeros((3, samples))
    for peak in beat_seconds:
        waves[0] += 0.15 * np.exp(-(((time - peak + 0.18) / 0.03) ** 2))
        waves[1] += np.exp(-(((time - peak) / qrs_width) ** 2))
        waves[2] += 0.3 * np.exp(-(((time - peak - 0.3) / 0.06) ** 2))
    signal = gain @ waves  # (leads, samples)
    signal += 0.2 * np.sin(2 * np.pi * 0.2 * time + rng.uniform(0, 6.3, size=(n_leads, 1)))
    signal += 0.03 * rng.normal(size=signal.shape)
    return signal.T, np.asarray(beat_seconds)


def write_fake_ptbxl(
    root: str | Path,
    *,
    n_patients: int,
    max_ecgs_per_patient: int = 3,
    sampling_rate: int = 100,
    seconds: float = 10.0,
    undiagnosed: int = 1,
    seed: int = 0,
) -> Path:
    """Writes a tiny PTB-XL: ``ptbxl_database.csv``, ``scp_statements.csv``, WFDB records.

    Each patient gets 1..``max_ecgs_per_patient`` 12-lead ECGs in ``records{rate}/00000/``
    (``<ecg_id>_lr`` at 100 Hz, ``_hr`` at 500 Hz; only the requested rate is written), all in one
    ``strat_fold`` (1..10, cycling over patients). Each ECG gets 1-2 diagnostic superclasses,
    each scaling the waves of its own leads (a learnable signal), plus a rhythm code; the first
    ``undiagnosed`` ECGs have only the rhythm code (no superclass), and the first patient is
    over 89 (age stored as 300, as PTB-XL does).

    Args:
        root: Folder to write into.
        n_patients: Number of patients.
        max_ecgs_per_patient: Each patient gets 1..this many ECGs.
        sampling_rate: 100 or 500.
        seconds: Length of each ECG.
        undiagnosed: ECGs without a diagnostic code.
        seed: Seed.

    Returns:
        The path of ``ptbxl_database.csv``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     table = pd.read_csv(write_fake_ptbxl(folder, n_patients=3, seed=1))
        ...     table["patient_id"].nunique(), table["filename_lr"][0]
        (3, 'records100/00000/00001_lr')
    """
    import wfdb

    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = list(FAKE_CODE_OF_CLASS)
    rows = []
    ecg_id = 0
    for patient in range(n_patients):
        age = 300.0 if patient == 0 else float(rng.integers(20, 89))
        sex = int(rng.integers(0, 2))
        for _ in range(int(rng.integers(1, max_ecgs_per_patient + 1))):
            ecg_id += 1
            if ecg_id <= undiagnosed:
                present: list[str] = []
            else:
                present = list(rng.choice(classes, size=int(rng.integers(1, 3)), replace=False))
            codes = {FAKE_CODE_OF_CLASS[c]: 100.0 for c in present} | {"SR": 0.0}
            gain = np.ones((12, 3))
            for c in present:
                leads = 2 * classes.index(c) + np.arange(2)
                gain[leads] *= [1.0, 1.8, -1.0]  # taller QRS, inverted T on the class's leads
            signal, _ = fake_ecg(
                seconds=seconds, rate_hz=sampling_rate, n_leads=12, rng=rng, lead_gain=gain
            )
            names = {
                rate: f"records{rate}/00000/{ecg_id:05d}_{suffix}"
                for rate, suffix in ((100, "lr"), (500, "hr"))
            }
            folder = root / f"records{sampling_rate}" / "00000"
            folder.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(
                Path(names[sampling_rate]).name,
                fs=sampling_rate,
                units=["mV"] * 12,
                sig_name=list(PTBXL_LEADS),
                p_signal=signal,
                fmt=["16"] * 12,
                write_dir=str(folder),
            )
            rows.append(
                {
                    "ecg_id": ecg_id,
                    "patient_id": float(1000 + patient),
                    "age": age,
                    "sex": sex,
                    "site": float(patient % 3),
                    "device": ["CS-12   E", "AT-6 C 5.5"][patient % 2],
                    "scp_codes": repr(codes),
                    "strat_fold": patient % 10 + 1,
                    "filename_lr": names[100],
                    "filename_hr": names[500],
                }
            )
    FAKE_SCP_STATEMENTS.to_csv(root / "scp_statements.csv")
    database = root / "ptbxl_database.csv"
    pd.DataFrame(rows).to_csv(database, index=False)
    return database


def write_fake_mitbih(
    root: str | Path,
    *,
    records: list[str],
    seconds: float = 60.0,
    rate_hz: float = 360.0,
    leads: tuple[str, ...] = ("MLII", "V1"),
    seed: int = 0,
) -> list[Path]:
    """Writes MIT-BIH-style records: 2-lead WFDB signals with ``.atr`` beat annotations.

    Beats come every ~0.8 s; about 10% are premature atrial beats (``A``, AAMI S: early, normal
    shape) and 10% ventricular (``V``: wide, inverted QRS). Rhythm (``+``) and noise (``~``)
    annotations, which are not beats, are interleaved. Each header carries the MIT-BIH
    demographics comment ``# <age> <sex> ...``.

    Args:
        root: Folder to write into.
        records: Record names, e.g. ``["100", "101"]``.
        seconds: Length of each recording.
        rate_hz: Sampling rate.
        leads: Signal names.
        seed: Seed.

    Returns:
        The ``.hea`` paths written.

    Example:
        >>> import tempfile, wfdb
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = write_fake_mitbih(folder, records=["100"], seconds=10, seed=0)
        ...     symbols = wfdb.rdann(f"{folder}/100", "atr").symbol
        >>> symbols[0], "N" in symbols
        ('+', True)
    """
    import wfdb

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for name in records:
        peaks, symbols = [], []
        time = 0.5
        while time < seconds - 0.5:
            kind = rng.choice(["N", "A", "V"], p=[0.8, 0.1, 0.1])
            if kind == "A":
                time -= 0.25  # premature
            peaks.append(time)
            symbols.append(str(kind))
            time += rng.uniform(0.75, 0.85)
        peaks = np.asarray(peaks)
        normal, _ = fake_ecg(
            seconds=seconds, rate_hz=rate_hz, n_leads=len(leads), rng=rng, beat_seconds=peaks
        )
        is_v = np.asarray(symbols) == "V"
        wide, _ = fake_ecg(
            seconds=seconds,
            rate_hz=rate_hz,
            n_leads=len(leads),
            rng=rng,
            beat_seconds=peaks[is_v],
            lead_gain=np.tile([0.0, -1.2, 0.0], (len(leads), 1)),
            qrs_width=0.07,
        )
        without_v, _ = fake_ecg(
            seconds=seconds,
            rate_hz=rate_hz,
            n_leads=len(leads),
            rng=rng,
            beat_seconds=peaks[is_v],
            lead_gain=np.tile([0.0, 1.0, 0.0], (len(leads), 1)),
        )
        signal = normal - without_v + wide  # V beats: a wide inverted QRS instead
        wfdb.wrsamp(
            name,
            fs=rate_hz,
            units=["mV"] * len(leads),
            sig_name=list(leads),
            p_signal=signal,
            fmt=["212"] * len(leads),
            comments=[f"{int(rng.integers(30, 85))} {rng.choice(['M', 'F'])} 1085 1629 x1"],
            write_dir=str(root),
        )
        samples = np.round(peaks * rate_hz).astype(np.int64)
        extra = np.array([5, int(samples[len(samples) // 2]) + 3])
        all_samples = np.concatenate([samples, extra])
        all_symbols = [*symbols, "+", "~"]
        order = np.argsort(all_samples, kind="stable")
        wfdb.wrann(
            name,
            "atr",
            all_samples[order],
            symbol=[all_symbols[i] for i in order],
            write_dir=str(root),
        )
        written.append(root / f"{name}.hea")
    return written
