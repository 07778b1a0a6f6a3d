"""MedMNIST v2 ``.npz`` files into a `Cohort`, read with NumPy alone (no ``medmnist`` package).

The official layout is six arrays: ``{train,val,test}_images`` uint8, ``(N, H, W)`` grey or
``(N, H, W, 3)`` colour, and ``{train,val,test}_labels``, ``(N, 1)`` (some copies store ``(N,)``)
class indices or ``(N, C)`` 0/1 for multi-label sets (ChestMNIST). MedMNIST has no patient ids, so
each image is its own patient: patient-level and record-level privacy coincide, and the cohort's
notes say so for the report. Every check names the file and the array, because a wrongly read
label array silently turns every utility and privacy number into noise.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dptrain.data.cohort import Cohort
from dptrain.data.locate import shared_data_path
from dptrain.data.preprocessing import ImageNormalize
from dptrain.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
SPLIT_CHOICES = ("patient", "official")
DOWNLOAD_HINT = (
    "https://zenodo.org/records/10519652, or `pip install medmnist` elsewhere, which saves it in "
    "~/.medmnist"
)


@dataclass
class MedMNISTDataConfig:
    """Which MedMNIST v2 file to read and how to split it.

    Attributes:
        name: The MedMNIST set, e.g. ``breastmnist``; names the data set in reports and, when
            ``path`` is empty, the file looked for (``images/<name>/<name>.npz`` in the shared
            data folder, see `shared_data_path`).
        path: The ``.npz`` file (any size: 28, 64, 128 or 224 pixels).
        split: ``patient``: our seeded patient-level split of all images; ``official``: the file's
            own train/val/test split (the cohort's ``official_split``).
        augment: Training-only augmentations, e.g. ``[hflip, "crop:2"]``.
        class_names: Names of the classes (or labels), in index order.
        max_records: 0 for all images, else a seeded subsample of this many, stratified by source
            split and label (for quick runs).
        seed: Seed of the ``max_records`` subsample.
    """

    name: str = "medmnist"
    path: str = ""
    split: str = "patient"
    augment: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    max_records: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("data.name is empty: name the MedMNIST set, e.g. breastmnist")
        if self.split not in SPLIT_CHOICES:
            raise ConfigError(
                f"data.split must be one of {list(SPLIT_CHOICES)}, got {self.split!r}"
            )
        if self.max_records < 0:
            raise ConfigError(f"data.max_records must be >= 0 (0 = all), got {self.max_records}")
        ImageNormalize(augment=tuple(self.augment))  # names a bad augmentation now, not later

    def load(self) -> Cohort:
        """Reads the file and returns its cohort (see `load_medmnist`)."""
        return load_medmnist(self)


def load_medmnist(config: MedMNISTDataConfig) -> Cohort:
    """Reads a MedMNIST v2 ``.npz`` into a cohort of uint8 ``(N, C, H, W)`` images.

    Args:
        config: The file and how to use it.

    Returns:
        The cohort: one patient per image (ids ``train-000123``), record attribute
        ``source_split``, `ImageNormalize` preprocessing, and ``official_split`` set when
        ``config.split == "official"``.

    Raises:
        DataError: For a missing or unreadable file, missing arrays, mixed image sizes or channel
            counts between splits, bad pixel values, or bad labels; each names the file and array.

    Example:
        >>> import tempfile
        >>> from dptrain.data.fake import write_fake_medmnist_npz
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = write_fake_medmnist_npz(Path(folder) / "toy.npz", n_train=6, n_val=2,
        ...                                    n_test=2)
        ...     cohort = MedMNISTDataConfig(name="toy", path=str(path), split="official").load()
        >>> cohort.features.shape, cohort.patients[:2].tolist(), cohort.official_split[-1].item()
        ((10, 1, 28, 28), ['train-000000', 'train-000001'], 'test')
    """
    path = Path(config.path or shared_data_path(f"images/{config.name}/{config.name}.npz"))
    if not path.is_file():
        raise DataError(
            f"data.path: {path} not found; get the MedMNIST v2 file {config.name}.npz "
            f"({DOWNLOAD_HINT}) and put it there, or set data.path=/path/to/{config.name}.npz"
        )
    images, labels, source_split = _read_arrays(path)
    patient_ids = _patient_ids(source_split)  # before subsampling: ids name rows of the file
    notes = [
        "MedMNIST has no patient identifiers: each image is treated as its own patient, so "
        "patient-level and record-level privacy coincide here."
    ]
    if config.max_records and config.max_records < len(images):
        notes.append(
            f"A seeded subsample of {config.max_records} of the {len(images)} images, stratified "
            "by split and label, is used (data.max_records)."
        )
        kept = stratified_subsample(
            _strata(source_split, labels), size=config.max_records, seed=config.seed
        )
        images, labels = images[kept], labels[kept]
        source_split, patient_ids = source_split[kept], patient_ids[kept]
    task, class_names = _task_and_classes(labels, config, path)
    official = None
    if config.split == "official":
        official = dict(zip(patient_ids, source_split))
    return Cohort.from_records(
        name=config.name,
        features=images,
        labels=labels,
        patient_ids=patient_ids,
        class_names=class_names,
        task=task,
        record_attributes={"source_split": source_split},
        preprocessing=ImageNormalize(augment=tuple(config.augment)),
        notes=tuple(notes),
        official_split=official,
    )


def stratified_subsample(strata: np.ndarray, *, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample with each stratum's share kept (largest remainder).

    Args:
        strata: ``(n,)`` stratum of every item (any comparable values).
        size: How many to keep, at most ``n``.
        seed: Seed.

    Returns:
        ``(size,)`` int64 sorted indices.

    Example:
        >>> kept = stratified_subsample(np.array([0] * 8 + [1] * 2), size=5, seed=0)
        >>> len(kept), int((kept >= 8).sum())
        (5, 1)
    """
    rng = np.random.default_rng(seed)
    values, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quotas = counts * size / counts.sum()
    taken = np.floor(quotas).astype(np.int64)
    by_remainder = np.argsort(-(quotas - taken), kind="stable")
    taken[by_remainder[: size - taken.sum()]] += 1
    kept = [
        rng.permutation(np.flatnonzero(inverse == stratum))[: taken[stratum]]
        for stratum in range(len(values))
    ]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All splits' images ``(N, C, H, W)`` uint8, labels int64 and source split, checked."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"data.path: cannot read {path} as a .npz archive ({error}); get the MedMNIST v2 "
            f"file ({DOWNLOAD_HINT})"
        ) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data.path: {path} is a single .npy array, not a MedMNIST v2 .npz")
    with archive:
        expected = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
        missing = [key for key in expected if key not in archive.files]
        if missing:
            raise DataError(
                f"data.path: {path.name} has no array {missing[0]!r} (its arrays: "
                f"{', '.join(archive.files) or 'none'}); a MedMNIST v2 file has "
                "{train,val,test}_images and {train,val,test}_labels"
            )
        images = [_images(archive[f"{split}_images"], f"{split}_images", path) for split in SPLITS]
        labels = [_labels(archive[f"{split}_labels"], f"{split}_labels", path) for split in SPLITS]
    for split, split_images, split_labels in zip(SPLITS, images, labels):
        if len(split_images) != len(split_labels):
            raise DataError(
                f"data.path: {path.name} has {len(split_images)} {split}_images but "
                f"{len(split_labels)} {split}_labels; the file is damaged, download it again"
            )
    for split, split_images in zip(SPLITS[1:], images[1:]):
        if split_images.shape[1:] != images[0].shape[1:]:
            kind = "channels" if split_images.shape[1] != images[0].shape[1] else "sizes"
            raise DataError(
                f"data.path: {path.name}: {split}_images {_describe(split_images)} and "
                f"train_images {_describe(images[0])} differ in {kind} (grey vs RGB or mixed "
                "image sizes); use one MedMNIST file, all splits at one size"
            )
    label_widths = {split_labels.shape[1:] for split_labels in labels}
    if len(label_widths) > 1:
        raise DataError(
            f"data.path: {path.name}: the label arrays differ in shape between splits "
            f"({[split_labels.shape for split_labels in labels]}); use one MedMNIST file"
        )
    source_split = np.repeat(np.array(SPLITS), [len(split_images) for split_images in images])
    if len(source_split) == 0:
        raise DataError(f"data.path: {path.name} holds no images")
    return np.concatenate(images), np.concatenate(labels), source_split


def _images(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, 1|3)`` pixels as uint8 ``(N, C, H, W)``."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"data.path: {path.name}: {key} has shape {array.shape}; expected (N, H, W) grey or "
            "(N, H, W, 3) colour images"
        )
    if array.dtype != np.uint8:
        numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        if (
            not numeric
            or (array.size and (array.min() < 0 or array.max() > 255))
            or (np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)))
        ):
            raise DataError(
                f"data.path: {path.name}: {key} ({array.dtype}) is not 8-bit pixels in 0..255; "
                "store the images as uint8 as MedMNIST does"
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def _labels(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Labels ``(N,)`` / ``(N, 1)`` -> int64 ``(N,)``; ``(N, C)`` with C > 1 kept (multilabel)."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (1, 2):
        raise DataError(
            f"data.path: {path.name}: {key} has shape {array.shape}; expected (N,), (N, 1) or "
            "(N, C) labels"
        )
    is_number = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if not is_number or (array.size and not np.all(array == np.round(array))):
        raise DataError(
            f"data.path: {path.name}: {key} holds non-integer labels ({array.dtype}); labels "
            "must be class indices 0..C-1 (or 0/1 per label)"
        )
    if array.size and array.min() < 0:
        raise DataError(
            f"data.path: {path.name}: {key} has a negative label ({array.min()}); labels must be "
            "class indices 0..C-1"
        )
    if array.ndim == 2 and array.size and array.max() > 1:
        raise DataError(
            f"data.path: {path.name}: {key} is multi-label ({array.shape[1]} columns) but holds "
            f"{array.max()}; multi-label arrays must hold only 0 and 1"
        )
    return array.astype(np.int64)


def _task_and_classes(
    labels: np.ndarray, config: MedMNISTDataConfig, path: Path
) -> tuple[str, tuple[str, ...]]:
    """The task and class names, checking labels against ``data.class_names``."""
    names = tuple(config.class_names)
    if labels.ndim == 2:
        if names and len(names) != labels.shape[1]:
            raise ConfigError(
                f"data.class_names has {len(names)} names for the {labels.shape[1]} labels of "
                f"{path.name}"
            )
        return "multilabel", names or tuple(f"label_{j}" for j in range(labels.shape[1]))
    largest = int(labels.max())
    if names and largest >= len(names):
        raise DataError(
            f"data.path: {path.name}: label {largest} is out of range for the {len(names)} "
            f"data.class_names {list(names)}; fix data.class_names or the label arrays"
        )
    n_classes = len(names) or largest + 1
    if n_classes < 2:
        raise DataError(
            f"data.path: {path.name}: every label is {largest}; a classifier needs two classes"
        )
    names = names or tuple(str(c) for c in range(n_classes))
    return ("binary" if n_classes == 2 else "multiclass"), names


def _strata(source_split: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Source split and label of every image as one string (multilabel: the label pattern)."""
    rows = labels.reshape(len(labels), -1).astype(str)
    return np.array([f"{s}:{''.join(row)}" for s, row in zip(source_split, rows)])


def _patient_ids(source_split: np.ndarray) -> np.ndarray:
    """``train-000000``, ``train-000001``, ..., ``val-000000``, ...: one patient per image."""
    ids = np.empty(len(source_split), dtype=object)
    for split in SPLITS:
        where = np.flatnonzero(source_split == split)
        ids[where] = [f"{split}-{i:06d}" for i in range(len(where))]
    return ids.astype(str)


def _describe(images: np.ndarray) -> str:
    """``(N, C, H, W)`` as e.g. ``28x28 grey``."""
    colour = {1: "grey", 3: "RGB"}.get(images.shape[1], f"{images.shape[1]}-channel")
    return f"{images.shape[2]}x{images.shape[3]} {colour}"
