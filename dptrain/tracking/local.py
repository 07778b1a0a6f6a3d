"""A tracker that writes CSV files into the run directory (``tracker=csv``): no service needed."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dptrain.tracking.pseudonyms import check_patient_ids


@dataclass
class CsvTrackerConfig:
    """Local CSV tracking.

    Attributes:
        folder: Sub-folder of the run directory to write into.
        patient_ids: ``pseudonymised`` (default), ``raw`` or ``none``, as for W&B.
    """

    folder: str = "tracker"
    patient_ids: str = "pseudonymised"

    def __post_init__(self) -> None:
        check_patient_ids(self.patient_ids)

    def open(self, *, run_dir: Path, run_name: str, config: dict) -> CsvTracker:
        """Starts tracking into ``run_dir / folder``."""
        return CsvTracker(Path(run_dir) / self.folder, config=config)


class CsvTracker:
    """Writes ``epochs.csv``, ``summary.json``, one CSV per table, and copies plots and files."""

    name = "csv"

    def __init__(self, folder: Path, *, config: dict) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
        self._epochs_file = self.folder / "epochs.csv"
        self._epoch_columns: list[str] | None = None
        # A run restarted in the same directory starts its own log, never appends to the last.
        self._epochs_file.unlink(missing_ok=True)
        (self.folder / "summary.json").unlink(missing_ok=True)

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Appends one row per epoch."""
        row = {"step": step, **metrics}
        with self._epochs_file.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if self._epoch_columns is None:
                writer.writeheader()
                self._epoch_columns = list(row)
            writer.writerow(row)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Merges metrics into ``summary.json``."""
        path = self.folder / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        summary.update(metrics)
        path.write_text(json.dumps(summary, indent=2, default=str))

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Writes ``<name>.csv``."""
        table.to_csv(self.folder / f"{name}.csv", index=False)

    def log_images(self, images: dict[str, Path]) -> None:
        """Copies the plot files."""
        for path in images.values():
            shutil.copy(path, self.folder / Path(path).name)

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Copies the files into ``artifacts/<name>/``."""
        target = self.folder / "artifacts" / name
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy(path, target / Path(path).name)

    def close(self, *, success: bool) -> None:
        """Records whether the run succeeded."""
        self.log_summary({"run_succeeded": success})
