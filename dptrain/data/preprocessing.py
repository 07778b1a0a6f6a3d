"""Imputation and standardisation fitted on a training split only, and stored as plain arrays.

The statistics live in three arrays rather than a fitted scikit-learn pipeline so that they travel
in the model checkpoint as tensors and load with ``torch.load(weights_only=True)``. Note that the
statistics are computed without noise: like every preprocessing fitted on data, they are outside
the DP-SGD guarantee (the training split's medians, means and standard deviations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        >>> [[round(float(v), 2) for v in row] for row in standardizer.transform(train)]
        [[-1.22, 0.0], [0.0, -1.22], [1.22, 1.22]]
    """

    fill: np.ndarray
    center: np.ndarray
    scale: np.ndarray

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

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Applies the fitted statistics to any records (train, test, or an audit pool)."""
        features = np.asarray(features, dtype=np.float32)
        filled = np.where(np.isnan(features), self.fill, features)
        return ((filled - self.center) / self.scale).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays to store in a checkpoint."""
        return {"fill": self.fill, "center": self.center, "scale": self.scale}
