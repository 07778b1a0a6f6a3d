"""MLflow tracking (``tracker=mlflow``) into a local store by default: no server, no network.

Where runs go: ``tracker.tracking_uri`` if set, else the ``MLFLOW_TRACKING_URI`` environment
variable (a hospital's MLflow server, say), else the file store ``./mlruns`` in the directory the
command runs from (MLflow's own default, so ``mlflow ui`` started there shows every run and sweep).
A file store keeps one folder per run, which parallel sweep jobs (joblib, SLURM on a shared disk)
write safely; MLflow 3 calls it "maintenance mode" and refuses it unless ``MLFLOW_ALLOW_FILE_STORE``
is set, so the tracker sets it for ``file:`` stores only. A ``sqlite:///...`` or ``http(s)://`` URI
works as well (sqlite needs the full ``mlflow`` package).

What a run logs: params = the flat config (``privacy.epsilon``, ``model.hidden``), metrics per
epoch (``train/loss``, ``train/epsilon``, ``train/epsilon_rdp``, step = epoch), the run summary's
numbers (``privacy/epsilon``, ``utility/auroc``, ...), artifacts ``report.md``, ``results.json``,
the plots, ``config.json`` and ``patient_risk.csv`` (patient ids pseudonymised unless
``tracker.patient_ids=raw``; not logged with ``none``). Run name = the run directory's name; the
runs of one multirun share the tag ``group``. MLflow names allow only letters, digits and
``_-. /``: any other character in a key (``subgroup/sex=F``) becomes ``_``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from dptrain.errors import ConfigError
from dptrain.tracking.base import flatten_config
from dptrain.tracking.pseudonyms import check_patient_ids

INSTALL_HINT = "pip install 'dptrain[mlflow]'"
MAX_PARAM_LENGTH = 500  # the smallest limit across MLflow versions and servers
MAX_PER_BATCH = 100  # params or tags per `log_batch` call
_INVALID_NAME_CHARACTERS = re.compile(r"[^/\w.\- ]")


def mlflow_name(key: str) -> str:
    """A param or metric name MLflow accepts (any other character becomes ``_``).

    Example:
        >>> mlflow_name("subgroup/sex=F/patient_auc_max")
        'subgroup/sex_F/patient_auc_max'
    """
    name = _INVALID_NAME_CHARACTERS.sub("_", str(key))
    name = re.sub(r"/+", "/", name).strip("/")  # MLflow refuses names that are not normal paths
    return name.replace("/./", "/_/").replace("..", "__") or "_"


@dataclass
class MlflowTrackerConfig:
    """MLflow run settings.

    Attributes:
        tracking_uri: Where runs go; None: ``MLFLOW_TRACKING_URI``, else ``./mlruns`` (see module
            docstring). A plain folder path is read as a file store.
        experiment: MLflow experiment (created on first use).
        group: Value of the run's ``group`` tag; None: the sweep directory in a multirun (set by
            the CLI), no tag for a single run.
        tags: Extra run tags.
        patient_ids: How the per-patient table reaches MLflow: ``pseudonymised`` (default),
            ``raw`` or ``none`` (not logged), as for W&B.
    """

    tracking_uri: str | None = None
    experiment: str = "dptrain"
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    patient_ids: str = "pseudonymised"

    def __post_init__(self) -> None:
        check_patient_ids(self.patient_ids)
        if not self.experiment.strip():
            raise ConfigError("tracker.experiment must be a non-empty MLflow experiment name")
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(
                f"tracker=mlflow needs the MLflow client: {INSTALL_HINT} "
                "(or choose tracker=csv or tracker=none)"
            )

    def resolved_uri(self) -> str:
        """The tracking URI the run will use; a folder path becomes an absolute ``file:`` URI.

        Example:
            >>> MlflowTrackerConfig(tracking_uri="/data/mlruns").resolved_uri()
            'file:///data/mlruns'
        """
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
        if urlparse(uri).scheme == "":
            return Path(uri).expanduser().resolve().as_uri()
        return uri

    def open(self, *, run_dir: Path, run_name: str, config: dict) -> MlflowTracker:
        """Starts an MLflow run named after ``run_dir`` and logs the flat config as params.

        Args:
            run_dir: The run directory (its name names the MLflow run).
            run_name: The config's run name (kept as the tag ``dptrain.name``).
            config: The run's resolved config.

        Returns:
            The open tracker.
        """
        uri = self.resolved_uri()
        if urlparse(uri).scheme == "file":
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise ConfigError(
                f"tracker=mlflow cannot import mlflow ({error}): {INSTALL_HINT}"
            ) from error

        client = MlflowClient(tracking_uri=uri)
        run_dir = Path(run_dir)
        tags = {"dptrain.name": run_name, "dptrain.run_dir": str(run_dir), **self.tags}
        if self.group:
            tags["group"] = self.group
        run = client.create_run(
            _experiment_id(client, self.experiment), run_name=run_dir.name, tags=tags
        )
        tracker = MlflowTracker(client, run.info.run_id, run_dir=run_dir, tracking_uri=uri)
        tracker.log_params(flatten_config(config))
        client.log_dict(run.info.run_id, config, "config.json")
        return tracker


def _experiment_id(client: Any, name: str) -> str:
    """The experiment's id, creating it; tolerates a parallel job creating it first."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class MlflowTracker:
    """Logs to one MLflow run through an `MlflowClient` (no global ``mlflow.start_run`` state)."""

    name = "mlflow"

    def __init__(self, client: Any, run_id: str, *, run_dir: Path, tracking_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.tracking_uri = tracking_uri

    def log_params(self, params: dict[str, Any]) -> None:
        """Logs params (values as text, cut to `MAX_PARAM_LENGTH`), in batches MLflow accepts."""
        from mlflow.entities import Param

        entries = [
            Param(mlflow_name(key), _param_text(value)[:MAX_PARAM_LENGTH])
            for key, value in params.items()
        ]
        for batch in _batches(entries, MAX_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch)

    def log_epoch(self, metrics: dict[str, float], *, step: int) -> None:
        """Logs training curves with ``step`` = epoch."""
        self._log_metrics({f"train/{key}": value for key, value in metrics.items()}, step=step)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Logs the run summary's numbers as metrics (what the runs table compares)."""
        self._log_metrics(metrics, step=0)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Logs ``<name>.csv`` as an artifact at the store's top level."""
        with tempfile.TemporaryDirectory(prefix="dptrain-mlflow-") as folder:
            path = Path(folder) / f"{name}.csv"
            table.to_csv(path, index=False)
            self.client.log_artifact(self.run_id, str(path))

    def log_images(self, images: dict[str, Path]) -> None:
        """Logs the plots where they lie in the run directory (so ``report.md`` links resolve)."""
        for path in images.values():
            self._log_file(Path(path))

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        """Logs files (report, results) where they lie in the run directory."""
        for path in paths:
            self._log_file(Path(path))

    def close(self, *, success: bool) -> None:
        """Ends the run as ``FINISHED`` or ``FAILED``."""
        self.client.set_terminated(self.run_id, status="FINISHED" if success else "FAILED")

    def notes(self) -> list[str]:
        """How to look at a local store (nothing for a server, which has its own address)."""
        if urlparse(self.tracking_uri).scheme in ("file", "sqlite"):
            return [f"mlflow ui --backend-store-uri {self.tracking_uri}"]
        return [f"mlflow run {self.run_id} at {self.tracking_uri}"]

    def _log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(mlflow_name(key), float(value), timestamp, step)
            for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        for batch in _batches(entries, 1000):
            self.client.log_batch(self.run_id, metrics=batch)

    def _log_file(self, path: Path) -> None:
        try:
            folder = path.resolve().parent.relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            folder = "."
        self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)


def _param_text(value: Any) -> str:
    """A config value as MLflow param text (lists and mappings as JSON, ``inf`` as ``inf``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
