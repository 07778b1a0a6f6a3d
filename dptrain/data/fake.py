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
