"""Weights & Biases tracking, offline unless the user has chosen otherwise.

Mode: ``tracker.mode`` if set, else the ``WANDB_MODE`` environment variable, else ``offline``: no
account and no network are needed, and ``wandb sync <dir>`` (printed by the CLI at the end of the
run) uploads the run later. The config is logged flat (``privacy.epsilon``, ``model.hidden``) so
the runs table filters and groups by any value; the runs of one multirun share a ``group``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dptrain.errors import ConfigError
from dptrain.tracking.base import flatten_config
from dptrain.tracking.pseudonyms import check_patient_ids

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class WandbTrackerConfig:
    """W&B run settings.

    Attributes:
        project: W&B project.
        entity: W&B entity (team or user); None for the default.
        mode: ``offline``, ``online`` or ``disabled``; None defers to ``WANDB_MODE`` or offline.
        group: Run group; None: the sweep directory in a multirun (set by the CLI), no group
            for a single run.
        tags: Run tags.
        patient_ids: How tables reach W&B: ``pseudonymised`` keyed-hash ids (default), ``raw``
            ids (explicit opt-in: they leave the machine on ``wandb sync``) or ``none`` (the
            per-patient table is not logged).
    """

    project: str = "dptrain"
    entity: str | None = None
    mode: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    patient_ids: str = "pseudonymised"

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in WANDB_MODES:
            raise ConfigError(f"tracker.mode must be one of {list(WANDB_MODES)}, got {self.mode!r}")
        check_patient_ids(self.patient_ids)

    def resolved_mode(self) -> str:
        """The mode the run will use (see module docstring)."""
        return self.mode or os.environ.get("WANDB_MODE") or "offline"

    def open(self, *, run_dir: Path, run_name: str, config: dict) -> WandbTracker:
        """Starts a W&B run writing under ``run_dir``."""
        mode = self.resolved_mode()
        if mode != "online":
            # Offline means no network: W&B's error reporting would still phone home (and on a
            # closed network hang for its timeout) unless the user has opted in explicitly.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=mode,
            group=self.group,
            tags=list(self.tags),
            # In a sweep every run shares the config name: its folder tells the runs apart.
            name=run_dir.name if self.group else run_name,
            dir=str(run_dir),
            config=flatten_config(config),
        )
        return WandbTracker(run, offline=mode == "offline")


class WandbTracker:
    """Logs to an open W&B run."""

    name = "wandb"

    def __init__(self, run, *, offline: bool = False) -> None:
        self.run = run
        # The offline run folder (``.../wandb/offline-run-<time>-<id>``) that `wandb sync` uploads.
        self.sync_dir = Path(run.dir).parent if offline else None

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Logs training curves against the epoch."""
        self.run.log({f"train/{key}": value for key, value in metrics.items()} | {"epoch": step})

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Sets run summary values (what the runs table compares across a sweep)."""
        self.run.summary.update(metrics)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Logs a ``wandb.Table`` (patient ids arrive already pseudonymised by the guard)."""
        import wandb

        self.run.log({name: wandb.Table(dataframe=table)})

    def log_images(self, images: dict[str, Path]) -> None:
        """Logs plots as images."""
        import wandb

        self.run.log({name: wandb.Image(str(path)) for name, path in images.items()})

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Logs files as one versioned artifact."""
        import wandb

        artifact = wandb.Artifact(name, type=kind)
        for path in paths:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self, *, success: bool) -> None:
        """Finishes the run, marking it failed if the job failed."""
        self.run.finish(exit_code=0 if success else 1)

    def notes(self) -> list[str]:
        """The command that uploads an offline run (nothing for online or disabled runs)."""
        return [f"wandb sync {self.sync_dir}"] if self.sync_dir is not None else []
