"""The tracker protocol, and the guard that keeps a tracker failure from costing a run.

Trackers fail soft: a broken network, a full disk under the tracker's folder or a bug in a
tracker's client is logged as a warning, and training, accounting and the results files go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """What a run tells an experiment tracker; every method may be a no-op.

    A tracker may also have ``notes() -> list[str]``: lines for the user after the run (the
    ``wandb sync <dir>`` of an offline run), which the CLI prints; `FailSoftTracker.notes` asks.
    """

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Per-epoch training metrics (loss, ε spent so far)."""

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Final headline numbers of the run."""

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """A table (e.g. per-patient risk: ids, subgroups and scores, never features)."""

    def log_images(self, images: dict[str, Path]) -> None:
        """Plots, by name."""

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Files to keep with the run (report, results)."""

    def close(self, *, success: bool) -> None:
        """Ends the tracker run; called in ``finally`` whatever happened."""


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The nested run config as dotted keys, so a tracker's runs table can filter on each value.

    Lists stay values (``model.hidden``); an empty mapping stays a value, so its key is shown.

    Example:
        >>> flatten_config({"privacy": {"epsilon": 3.0}, "model": {"hidden": [64, 64]}, "seed": 1})
        {'privacy.epsilon': 3.0, 'model.hidden': [64, 64], 'seed': 1}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten_config(value, prefix=f"{name}.")
        else:
            flat[name] = value
    return flat


def sweep_group(sweep_dir: Path, *, cwd: Path | None = None) -> str:
    """The group shared by the runs of one multirun: its sweep directory.

    Relative to the working directory when inside it (unique across days with Hydra's default
    ``multirun/<date>/<time>``), else the directory's name (no home paths sent to a tracker).

    Example:
        >>> sweep_group(Path("/lab/proj/multirun/2024-05-01/10-00-00"), cwd=Path("/lab/proj"))
        'multirun/2024-05-01/10-00-00'
        >>> sweep_group(Path("/scratch/sweeps/epsilon"), cwd=Path("/lab/proj"))
        'epsilon'
    """
    sweep_dir = Path(os.path.abspath(sweep_dir))
    cwd = Path(os.path.abspath(cwd or Path.cwd()))
    try:
        relative = sweep_dir.relative_to(cwd).as_posix()
    except ValueError:
        return sweep_dir.name
    return sweep_dir.name if relative == "." else relative


@dataclass
class NoTrackerConfig:
    """No tracking (``tracker=none``)."""

    def open(self, *, run_dir: Path, run_name: str, config: dict) -> NullTracker:
        """Returns a tracker that does nothing."""
        return NullTracker()


class NullTracker:
    """Tracks nothing (``tracker=none``)."""

    name = "none"

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Ignores the metrics."""

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Ignores the metrics."""

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Ignores the table."""

    def log_images(self, images: dict[str, Path]) -> None:
        """Ignores the images."""

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Ignores the files."""

    def close(self, *, success: bool) -> None:
        """Nothing to close."""


class FailSoftTracker:
    """Wraps a tracker so that none of its errors propagates; each is logged once per method.

    Example:
        >>> class Broken(NullTracker):
        ...     def log_summary(self, metrics):
        ...         raise OSError("disk full")
        >>> FailSoftTracker(Broken()).log_summary({"auroc": 0.8})  # logs a warning, no raise
    """

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.name = getattr(tracker, "name", type(tracker).__name__)
        self.failures: list[str] = []

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self.tracker, method)(*args, **kwargs)
        except Exception as error:  # a tracker must never stop training or lose results
            if method not in self.failures:
                log.warning("tracker %s failed in %s: %s (run continues)", self.name, method, error)
            self.failures.append(method)

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Forwards per-epoch metrics."""
        self._call("log_epoch", metrics, step=step)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Forwards the headline metrics."""
        self._call("log_summary", metrics)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Forwards a table."""
        self._call("log_table", name, table)

    def log_images(self, images: dict[str, Path]) -> None:
        """Forwards plots."""
        self._call("log_images", images)

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Forwards files."""
        self._call("log_artifact", name, kind, paths)

    def close(self, *, success: bool) -> None:
        """Closes the wrapped tracker."""
        self._call("close", success=success)

    def notes(self) -> list[str]:
        """What the user should know after the run (``wandb sync <dir>``); never raises."""
        try:
            return list(getattr(self.tracker, "notes", list)())
        except Exception as error:  # a hint is not worth a failed run
            log.warning("tracker %s failed in notes: %s", self.name, error)
            return []
