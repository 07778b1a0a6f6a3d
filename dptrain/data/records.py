"""Records of any shape and dtype, held in memory or read from disk on demand.

A `Cohort` keeps its inputs as ``(n_records, *shape)``: tables as float32, images as uint8 until
a batch is formed (a 224×224 set must not be blown up 4× to float32), signals as float32. Most
data sets fit in memory as a NumPy array; a loader whose data would not may instead give a
`LazyRecords`, which reads the records it is asked for. The helpers here accept either, so the
training loop, the audit and prediction never need to know which one they hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, Union, runtime_checkable

import numpy as np


@runtime_checkable
class LazyRecords(Protocol):
    """Records that are read on demand (e.g. image files decoded when a batch needs them).

    Implementations must be picklable (audit workers receive them) and cheap to subset: a subset
    is a new view over fewer files, nothing is read until `read` is called.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_records, *record_shape)``."""

    @property
    def dtype(self) -> np.dtype:
        """The dtype `read` returns."""

    def __len__(self) -> int:
        """Number of records."""

    def subset(self, indices: np.ndarray) -> LazyRecords:
        """A lazy view of the records at ``indices``."""

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The records at ``indices``, decoded, as one ``(len(indices), *record_shape)`` array."""


Records = Union[np.ndarray, LazyRecords]  # noqa: UP007 (a runtime alias, used in isinstance)


def take(records: Records, indices: np.ndarray) -> Records:
    """The records at ``indices``, of the same kind (a lazy source stays lazy).

    Example:
        >>> take(np.arange(5), np.array([4, 0])).tolist()
        [4, 0]
    """
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(records, np.ndarray):
        return records[indices]
    return records.subset(indices)


def read(records: Records, indices: np.ndarray | None = None) -> np.ndarray:
    """The records at ``indices`` (all when None) as an in-memory array."""
    if indices is None:
        indices = np.arange(len(records))
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(records, np.ndarray):
        return records[indices]
    return records.read(indices)


def chunks(records: Records, size: int) -> Iterator[np.ndarray]:
    """Consecutive in-memory chunks of at most ``size`` records, in order.

    Example:
        >>> [chunk.tolist() for chunk in chunks(np.arange(5), 2)]
        [[0, 1], [2, 3], [4]]
    """
    for start in range(0, len(records), size):
        indices = np.arange(start, min(start + size, len(records)))
        yield read(records, indices)


def record_shape(records: Records) -> tuple[int, ...]:
    """The shape of one record."""
    return tuple(records.shape[1:])
