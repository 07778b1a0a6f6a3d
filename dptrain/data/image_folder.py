"""A folder of images plus a metadata CSV into a `Cohort` (CheXpert, MIMIC-CXR, Fitzpatrick layout).

One CSV row per image: a path column (relative to ``image_root``), the patient id (several images
per patient is the normal case, and membership, splits and the audit are all per patient), label
column(s), and subgroup columns, either per patient (sex, age band) or per image (view, body
site, device). Images are decoded with Pillow, converted to grey or RGB and resized to
``size × size`` (bilinear, antialiased when shrinking; the aspect ratio is not kept). They are held
as uint8 ``(N, C, H, W)`` in memory, or, with ``lazy``, decoded batch by batch from the files by a
picklable `LazyImageFiles`.

A missing or unreadable file is an error naming the first few, never a silent skip; with
``on_bad_file=skip`` they are dropped and the cohort's notes give the count for the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from dptrain.data.cohort import Cohort
from dptrain.data.preprocessing import ImageNormalize
from dptrain.data.subgroups import check_subgroup_bins, encode_subgroup, merge_small_subgroups
from dptrain.data.tables import encode_classes, read_table, require_columns
from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CHANNELS = {"grey": 1, "rgb": 3}
BAD_FILE_CHOICES = ("error", "skip")
SHOWN_BAD_FILES = 3
# Pillow raises these for files that are not images or are damaged.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass
class ImageFolderDataConfig:
    """Where the metadata CSV and images are, and what the CSV's columns mean.

    Attributes:
        path: The metadata CSV (or Parquet) file, one row per image.
        path_column: Column with each image's file path, relative to ``image_root`` (or absolute).
        id_column: Column with the patient id of each image; several images may share one.
        label_columns: One integer column (binary or multiclass) or several 0/1 columns
            (multilabel).
        name: Data set name for reports.
        image_root: Folder the paths are relative to; empty means the CSV's folder.
        patient_subgroup_columns: Per-patient attributes (sex, age); must be constant within a
            patient.
        record_subgroup_columns: Per-image attributes (view, body site, device).
        subgroup_bins: Numeric subgroup column -> bin edges, e.g. ``age: [0, 40, 65, 120]``.
            A numeric column with many values and no edges is banded at its rounded quartiles.
        min_subgroup_size: Subgroup values held by fewer patients are merged into
            ``other (n < min)``, so no tiny group's metrics single its patients out.
        size: Images are resized to ``size × size`` pixels.
        channels: ``grey`` or ``rgb``.
        on_bad_file: ``error``: stop, naming the missing or unreadable files; ``skip``: drop
            them and state the count in the report.
        lazy: Decode images when a batch needs them instead of all at load time (every file's
            existence is still checked at load time).
        augment: Training-only augmentations, e.g. ``[hflip, "crop:2"]``.
        class_names: Names of the classes in sorted label order (or one per label column).
    """

    path: str
    path_column: str
    id_column: str
    label_columns: list[str]
    name: str = "image_folder"
    image_root: str = ""
    patient_subgroup_columns: list[str] = field(default_factory=list)
    record_subgroup_columns: list[str] = field(default_factory=list)
    subgroup_bins: dict[str, list[float]] = field(default_factory=dict)
    min_subgroup_size: int = 5
    size: int = 28
    channels: str = "grey"
    on_bad_file: str = "error"
    lazy: bool = False
    augment: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.label_columns:
            raise ConfigError("data.label_columns is empty: name the label column, e.g. [label]")
        if self.size < 1:
            raise ConfigError(f"data.size must be >= 1 pixel, got {self.size}")
        if self.channels not in CHANNELS:
            raise ConfigError(
                f"data.channels must be one of {list(CHANNELS)}, got {self.channels!r}"
            )
        if self.on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(
                f"data.on_bad_file must be one of {list(BAD_FILE_CHOICES)}, "
                f"got {self.on_bad_file!r}"
            )
        both = sorted(set(self.patient_subgroup_columns) & set(self.record_subgroup_columns))
        if both:
            raise ConfigError(
                f"data: column {both[0]!r} is in both patient_subgroup_columns and "
                "record_subgroup_columns; keep it in one"
            )
        subgroups = {*self.patient_subgroup_columns, *self.record_subgroup_columns}
        unbinned = sorted(set(self.subgroup_bins) - subgroups)
        if unbinned:
            raise ConfigError(
                f"data.subgroup_bins.{unbinned[0]}: {unbinned[0]!r} is not a subgroup column; add "
                "it to data.patient_subgroup_columns or data.record_subgroup_columns"
            )
        check_subgroup_bins(self.subgroup_bins)
        if isinstance(self.min_subgroup_size, bool) or self.min_subgroup_size < 1:
            raise ConfigError(
                f"data.min_subgroup_size must be an integer >= 1 (patients), got "
                f"{self.min_subgroup_size!r}"
            )
        ImageNormalize(augment=tuple(self.augment))  # names a bad augmentation now, not later

    def load(self) -> Cohort:
        """Reads the CSV and images and returns the cohort (see `load_image_folder`)."""
        return load_image_folder(self)


def decode_image(path: str | Path, *, size: int, channels: str) -> np.ndarray:
    """One image file as uint8 ``(C, size, size)``: grey or RGB, resized bilinearly.

    16-bit greyscale files are scaled to 8 bits (÷ 257) rather than clipped.

    Args:
        path: An image file Pillow can read (PNG, JPEG, TIFF, ...).
        size: Output height and width.
        channels: ``grey`` or ``rgb``.

    Returns:
        ``(1 or 3, size, size)`` uint8.

    Raises:
        OSError, ValueError, SyntaxError: From Pillow, for a file it cannot decode.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     Image.new("RGB", (40, 30), (255, 0, 0)).save(f"{folder}/red.png")
        ...     decode_image(f"{folder}/red.png", size=8, channels="rgb")[:, 0, 0].tolist()
        [255, 0, 0]
    """
    with Image.open(str(path)) as image:  # a plain str: Pillow quotes its repr in errors
        if image.mode.startswith("I"):  # 16/32-bit integer grey: Pillow's convert would clip
            pixels = np.asarray(image, dtype=np.float64) / 257.0
            image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
        image = image.convert("L" if channels == "grey" else "RGB")
        image = image.resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@dataclass(frozen=True, eq=False)
class LazyImageFiles:
    """Image files decoded on demand: the `LazyRecords` of an image folder.

    Picklable (plain paths and two settings), so audit workers receive it cheaply, and a subset
    is a view over fewer paths; nothing is read until `read`.

    Attributes:
        paths: ``(n_records,)`` str absolute file paths.
        size: Height and width of the decoded images.
        channels: ``grey`` or ``rgb``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     for shade in (0, 200):
        ...         Image.new("L", (5, 5), shade).save(f"{folder}/{shade}.png")
        ...     paths = np.array([f"{folder}/0.png", f"{folder}/200.png"])
        ...     files = LazyImageFiles(paths, size=4, channels="grey")
        ...     files.shape, files.subset(np.array([1])).read(np.array([0]))[0, 0, 0, 0].item()
        ((2, 1, 4, 4), 200)
    """

    paths: np.ndarray
    size: int
    channels: str

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_records, C, size, size)``."""
        return (len(self.paths), CHANNELS[self.channels], self.size, self.size)

    @property
    def dtype(self) -> np.dtype:
        """Always uint8."""
        return np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray) -> LazyImageFiles:
        """A lazy view of the files at ``indices``."""
        return LazyImageFiles(
            self.paths[np.asarray(indices, dtype=np.int64)], self.size, self.channels
        )

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Decodes the files at ``indices`` into ``(len(indices), C, size, size)`` uint8.

        Raises:
            DataError: Naming the file, if one cannot be decoded.
        """
        indices = np.asarray(indices, dtype=np.int64)
        batch = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        for row, index in enumerate(indices):
            path = self.paths[index]
            try:
                batch[row] = decode_image(path, size=self.size, channels=self.channels)
            except DECODE_ERRORS as error:
                raise DataError(
                    f"data: cannot decode image {path} ({_one_line(error)}); replace the file, "
                    "or load with data.lazy=false and data.on_bad_file=skip to drop bad files"
                ) from error
        return batch


def load_image_folder(config: ImageFolderDataConfig) -> Cohort:
    """Reads the metadata table and the images it lists into a cohort of uint8 images.

    Args:
        config: The files and the meaning of the table's columns.

    Returns:
        The cohort: images ``(N, C, size, size)`` uint8 (in memory, or `LazyImageFiles`),
        patient and record subgroup attributes, `ImageNormalize` preprocessing.

    Raises:
        DataError: For a missing or empty table, missing columns, ids or labels, non-integer
            labels, a patient subgroup that varies within a patient, or (with
            ``on_bad_file=error``) missing or unreadable image files.

    Example:
        >>> import tempfile
        >>> from dptrain.data.fake import write_fake_image_folder
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     csv = write_fake_image_folder(folder, n_patients=4, max_images_per_patient=3)
        ...     cohort = ImageFolderDataConfig(path=str(csv), path_column="path",
        ...         id_column="patient_id", label_columns=["label"], size=16,
        ...         patient_subgroup_columns=["sex"], record_subgroup_columns=["view"]).load()
        >>> cohort.n_patients, cohort.features.shape[1:], cohort.features.dtype
        (4, (1, 16, 16), dtype('uint8'))
    """
    frame = _read_metadata(config.path)
    source = Path(config.path).name
    require_columns(frame, [config.path_column], "data.path_column", source)
    require_columns(frame, [config.id_column], "data.id_column", source)
    require_columns(frame, config.label_columns, "data.label_columns", source)
    require_columns(frame, config.patient_subgroup_columns, "data.patient_subgroup_columns", source)
    require_columns(frame, config.record_subgroup_columns, "data.record_subgroup_columns", source)
    for column, field_name in (
        (config.id_column, "data.id_column"),
        (config.path_column, "data.path_column"),
    ):
        missing = frame[column].isna()
        if missing.any():
            raise DataError(
                f"{field_name}: {int(missing.sum())} rows of {source} have no value in column "
                f"{column!r} (first at row {int(np.flatnonzero(missing)[0])}); fill or drop them"
            )
    labels, class_names, task = _labels(frame, config, source)
    patient_ids = _id_strings(frame[config.id_column])
    notes: list[str] = []
    subgroups = {
        column: encode_subgroup(
            frame[column],
            column=column,
            edges=config.subgroup_bins.get(column),
            value_names={},
            patient_ids=patient_ids,
            minimum=config.min_subgroup_size,
            notes=notes,
        )
        for column in (*config.patient_subgroup_columns, *config.record_subgroup_columns)
    }
    for column in config.patient_subgroup_columns:
        _require_constant_per_patient(subgroups[column], patient_ids, column, source)

    image_root = Path(config.image_root) if config.image_root else Path(config.path).parent
    paths = np.array([str((image_root / str(p)).absolute()) for p in frame[config.path_column]])
    images, bad = _read_images(paths, config)
    if bad:
        shown = "; ".join(
            f"{paths[i]} ({reason})" for i, reason in list(bad.items())[:SHOWN_BAD_FILES]
        )
        if config.on_bad_file == "error" or len(bad) == len(paths):
            raise DataError(
                f"data.path_column: {len(bad)} of the {len(paths)} image files listed in {source} "
                f"are missing or unreadable under {image_root}, e.g. {shown}; fix the files, "
                "data.image_root or data.path_column, or set data.on_bad_file=skip"
            )
        log.warning("skipping %d missing or unreadable image files, e.g. %s", len(bad), shown)
        notes.append(
            f"{len(bad)} of the {len(paths)} image files listed in {source} were missing or "
            "unreadable and were left out (data.on_bad_file=skip)."
        )
        kept = np.setdiff1d(np.arange(len(paths)), np.fromiter(bad, dtype=np.int64))
        images = images[kept] if isinstance(images, np.ndarray) else images.subset(kept)
        labels, patient_ids = labels[kept], patient_ids[kept]
        # Groups shrink with the skipped files: merge again below the minimum size.
        subgroups = {
            column: merge_small_subgroups(
                values[kept],
                patient_ids,
                column=column,
                minimum=config.min_subgroup_size,
                notes=notes,
            )
            for column, values in subgroups.items()
        }

    first_of_patient = pd.Series(np.arange(len(patient_ids))).groupby(patient_ids).first()
    return Cohort.from_records(
        name=config.name,
        features=images,
        labels=labels,
        patient_ids=patient_ids,
        attributes={
            column: dict(
                zip(first_of_patient.index, subgroups[column][first_of_patient.to_numpy()])
            )
            for column in config.patient_subgroup_columns
        },
        class_names=class_names,
        task=task,
        record_attributes={column: subgroups[column] for column in config.record_subgroup_columns},
        preprocessing=ImageNormalize(augment=tuple(config.augment)),
        notes=tuple(notes),
    )


def _read_metadata(path: str) -> pd.DataFrame:
    """The metadata table, with one-line errors for a missing, empty or row-less file."""
    try:
        frame = read_table(path)
    except pd.errors.EmptyDataError as error:
        raise DataError(
            f"data.path: {path} is empty; it needs a header and one row per image"
        ) from error
    if frame.empty:
        raise DataError(f"data.path: {path} has a header but no rows; list one image per row")
    return frame


def _read_images(
    paths: np.ndarray, config: ImageFolderDataConfig
) -> tuple[np.ndarray | LazyImageFiles, dict[int, str]]:
    """The images (decoded, or lazy) and ``{row: reason}`` for each missing or unreadable file."""
    bad = {i: "missing" for i, path in enumerate(paths) if not Path(path).is_file()}
    if config.lazy:
        return LazyImageFiles(paths, config.size, config.channels), bad
    images = np.zeros((len(paths), CHANNELS[config.channels], config.size, config.size), np.uint8)
    for i, path in enumerate(tqdm(paths, desc="decoding images", disable=None, leave=False)):
        if i in bad:
            continue
        try:
            images[i] = decode_image(path, size=config.size, channels=config.channels)
        except DECODE_ERRORS as error:
            bad[i] = f"unreadable: {_one_line(error)}"
    return images, dict(sorted(bad.items()))


def _labels(
    frame: pd.DataFrame, config: ImageFolderDataConfig, source: str
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Class indices ``(N,)`` (one column) or 0/1 ``(N, C)`` (several), names and task."""
    multilabel = len(config.label_columns) > 1
    for column in config.label_columns:
        values = frame[column]
        if values.isna().any():
            uncertain = " (map CheXpert's blank and -1 'uncertain' labels to 0 or 1 first)"
            raise DataError(
                f"data.label_columns: column {column!r} of {source} has "
                f"{int(values.isna().sum())} missing labels; drop or fill those rows"
                f"{uncertain if multilabel else ''}"
            )
        numeric = pd.api.types.is_numeric_dtype(values)  # bools count as numeric
        if not numeric or not np.all(values.to_numpy(np.float64) % 1 == 0):
            raise DataError(
                f"data.label_columns: column {column!r} of {source} has non-integer labels (e.g. "
                f"{values.iloc[0]!r}); encode the classes as integers 0..C-1"
            )
    if multilabel:
        labels = frame[config.label_columns].to_numpy(dtype=np.int64)
        if not np.isin(labels, (0, 1)).all():
            raise DataError(
                f"data.label_columns: multilabel columns of {source} must hold only 0 and 1, "
                f"found {sorted(set(np.unique(labels)) - {0, 1})[:3]}; map other values to 0/1"
            )
        names = tuple(config.class_names) or tuple(config.label_columns)
        if len(names) != labels.shape[1]:
            raise ConfigError(
                f"data.class_names has {len(names)} names for {labels.shape[1]} label columns"
            )
        return labels, names, "multilabel"
    column = config.label_columns[0]
    return encode_classes(frame[column], column, source, config.class_names)


def _require_constant_per_patient(
    values: np.ndarray, patient_ids: np.ndarray, column: str, source: str
) -> None:
    distinct = pd.Series(values).groupby(patient_ids).nunique()
    varying = distinct.index[distinct.to_numpy() > 1]
    if len(varying):
        example = varying[0]
        seen = ", ".join(sorted({str(value) for value in values[patient_ids == example]}))
        raise DataError(
            f"data.patient_subgroup_columns: column {column!r} of {source} varies within patient "
            f"{str(example)!r} ({seen}) and {len(varying) - 1} more; fix it, or move it to "
            "data.record_subgroup_columns"
        )


def _id_strings(ids: pd.Series) -> np.ndarray:
    """Patient ids as strings, without a spurious ``.0`` when a reader made integer ids float."""
    if pd.api.types.is_float_dtype(ids) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    return ids.astype(str).to_numpy()


def _one_line(error: Exception) -> str:
    """An exception's message on one line (Pillow's can span several)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
