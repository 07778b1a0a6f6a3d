"""Preprocessing owned by the data: fitted on a training split only, stored as plain arrays.

Each modality says how its records become model inputs through a *spec* carried by its `Cohort`
(`Standardize` for tables and signals, `ImageNormalize` for images). `fit` fits the spec on the
training records of one model (the deployed one, or each audit model) and gets a *fitted*
preprocessing, which `fit`, the deployed `TrainedModel` and the checkpoint all apply the same way.

The statistics live in arrays rather than a fitted scikit-learn pipeline so that they travel in
the checkpoint as tensors and load with ``torch.load(weights_only=True)``. They are computed
without noise: like every preprocessing fitted on data, they are outside the DP-SGD guarantee
(the training split's medians, means and standard deviations), and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from dptrain.data.augment import Augmentation, parse_augmentations
from dptrain.data.records import Records, chunks, read
from dptrain.errors import DataError

STATISTICS_CHUNK = 4096


class FittedPreprocessing(Protocol):
    """Preprocessing fitted on one training split."""

    kind: ClassVar[str]

    def transform(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw records ``(n, *shape)`` (any dtype) -> float32 model inputs."""

    def augment(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random training view of transformed inputs (identity when nothing is configured)."""

    def state(self) -> dict[str, np.ndarray]:
        """The arrays to store in a checkpoint."""


class Preprocessing(Protocol):
    """A modality's preprocessing, before it is fitted: what `Cohort.preprocessing` holds."""

    kind: ClassVar[str]

    def fit(self, records: Records) -> FittedPreprocessing:
        """Fits on training records."""


@dataclass(frozen=True)
class Standardizer:
    """Fills missing values with a median, then centres and scales per feature (or per channel).

    Attributes:
        fill: Per-feature replacement for NaN, broadcastable to one record.
        center: Per-feature mean after filling, broadcastable to one record.
        scale: Per-feature standard deviation (1 where it is 0), broadcastable to one record.

    Example:
        >>> train = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
        >>> standardizer = Standardizer.fit(train)
        >>> [[round(float(v), 2) for v in row] for row in standardizer.transform_array(train)]
        [[-1.22, 0.0], [0.0, -1.22], [1.22, 1.22]]
    """

    fill: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    kind: ClassVar[str] = "standardize"

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardizer:
        """Fits on training records: per column for tables, per channel (axis 1) otherwise.

        Args:
            features: ``(n_records, n_features)`` or ``(n_records, n_channels, ...)`` float.

        Returns:
            The fitted standardizer.
        """
        features = np.asarray(features, dtype=np.float64)
        axes = (0,) if features.ndim == 2 else (0, *range(2, features.ndim))
        all_missing = np.isnan(features).all(axis=axes, keepdims=True)
        safe = np.where(all_missing, 0.0, features)
        fill = np.nan_to_num(np.nanmedian(safe, axis=axes, keepdims=True)[0])
        filled = np.where(np.isnan(features), fill, features)
        center = filled.mean(axis=axes, keepdims=True)[0]
        scale = filled.std(axis=axes, keepdims=True)[0]
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(
            fill=fill.astype(np.float32),
            center=center.astype(np.float32),
            scale=scale.astype(np.float32),
        )

    def transform_array(self, features: np.ndarray) -> np.ndarray:
        """Applies the fitted statistics to records in a NumPy array."""
        features = np.asarray(features, dtype=np.float32)
        filled = np.where(np.isnan(features), self.fill, features)
        return ((filled - self.center) / self.scale).astype(np.float32)

    def transform(self, batch: torch.Tensor) -> torch.Tensor:
        """The same as `transform_array`, on a tensor (bit-identical float32 arithmetic)."""
        batch = batch.float()
        fill, center, scale = (torch.from_numpy(a) for a in (self.fill, self.center, self.scale))
        filled = torch.where(torch.isnan(batch), fill, batch)
        return (filled - center) / scale

    def augment(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Tables and standardised signals are not augmented."""
        return batch

    def state(self) -> dict[str, np.ndarray]:
        """The arrays to store in a checkpoint."""
        return {"fill": self.fill, "center": self.center, "scale": self.scale}


@dataclass(frozen=True)
class Standardize:
    """Tables and signals: median imputation, then per-feature (per-lead) standardisation.

    Example:
        >>> Standardize().fit(np.array([[0.0], [2.0]], np.float32)).center.tolist()
        [1.0]
    """

    kind: ClassVar[str] = "standardize"

    def fit(self, records: Records) -> Standardizer:
        """Fits a `Standardizer` on the training records."""
        return Standardizer.fit(read(records))


@dataclass(frozen=True)
class ImageNormalizer:
    """Scales 8-bit pixels to [0, 1], then normalises each channel with training statistics.

    Attributes:
        mean: ``(C, 1, 1)`` float32 per-channel mean of the [0, 1] pixels of the training images.
        std: ``(C, 1, 1)`` float32 per-channel standard deviation (1 where it is 0).
        augmentations: Training-only random transforms, applied after normalisation.

    Example:
        >>> images = np.array([[[[0, 255]]], [[[255, 255]]]], np.uint8)  # (2, 1, 1, 2)
        >>> normalizer = ImageNormalize().fit(images)
        >>> round(float(normalizer.mean.squeeze()), 2), normalizer.transform(
        ...     torch.from_numpy(images)).shape
        (0.75, torch.Size([2, 1, 1, 2]))
    """

    mean: np.ndarray
    std: np.ndarray
    augmentations: tuple[Augmentation, ...] = ()
    kind: ClassVar[str] = "image"

    def transform(self, batch: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` uint8 (or float in [0, 255]) -> normalised float32."""
        pixels = batch.float() / 255.0
        return (pixels - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)

    def augment(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view: each configured augmentation in order."""
        for augmentation in self.augmentations:
            batch = augmentation(batch, generator)
        return batch

    def state(self) -> dict[str, np.ndarray]:
        """The arrays to store in a checkpoint (augmentations are config, not state)."""
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class ImageNormalize:
    """Images: [0, 1] scaling, per-channel normalisation, optional training augmentation.

    Attributes:
        augment: Augmentation names with optional arguments (see `dptrain.data.augment`), e.g.
            ``("hflip", "crop:2")``; applied to training batches only.
    """

    augment: tuple[str, ...] = ()
    kind: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        parse_augmentations(self.augment)  # fail early, naming the bad entry

    def fit(self, records: Records) -> ImageNormalizer:
        """Per-channel mean and standard deviation of the training pixels, read in chunks."""
        if len(records) == 0:
            raise DataError("cannot fit image normalisation on an empty training split")
        total = total_squares = None
        count = 0
        for chunk in chunks(records, STATISTICS_CHUNK):
            pixels = chunk.astype(np.float64) / 255.0
            axes = (0, *range(2, pixels.ndim))
            sums, squares = pixels.sum(axis=axes), np.square(pixels).sum(axis=axes)
            total = sums if total is None else total + sums
            total_squares = squares if total_squares is None else total_squares + squares
            count += pixels.size // pixels.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_squares / count - mean**2, 0.0))
        std = np.where(std > 1e-6, std, 1.0)
        shape = (-1,) + (1,) * (len(records.shape) - 2)
        return ImageNormalizer(
            mean=mean.reshape(shape).astype(np.float32),
            std=std.reshape(shape).astype(np.float32),
            augmentations=parse_augmentations(self.augment),
        )


FITTED_KINDS = {"standardize": Standardizer, "image": ImageNormalizer}


def preprocessing_from_state(kind: str, arrays: dict[str, object]) -> FittedPreprocessing:
    """Rebuilds a fitted preprocessing from a checkpoint's arrays (for prediction).

    Example:
        >>> fitted = Standardize().fit(np.array([[0.0], [2.0]], np.float32))
        >>> preprocessing_from_state("standardize", fitted.state()).center.tolist()
        [1.0]
    """
    if kind not in FITTED_KINDS:
        raise DataError(
            f"checkpoint preprocessing kind {kind!r} is unknown (known: {sorted(FITTED_KINDS)})"
        )
    values = {name: np.asarray(value) for name, value in arrays.items()}
    return FITTED_KINDS[kind](**values)
