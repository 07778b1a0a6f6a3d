"""Many runs compared: load saved run directories, find the swept axes, aggregate seeds.

A sweep is any set of run directories (a Hydra multirun, or runs picked by hand). Runs whose
configurations differ only in ``seed`` (and in paths, names and execution settings that do not
change the numbers) form one group; each number of the runs' flat ``summary`` is then reported as
the mean over seeds with a 95 % Student-t interval (a single seed gets no interval). Everything
here reads saved files only (``results.json``, ``patient_risk.csv``); nothing retrains.

Loading (`find_run_dirs`, `load_runs`) does the I/O; `summarize_sweep` is pure.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dptrain.errors import DataError
from dptrain.reporting.files import PATIENT_RISK_FILE, RESULTS_FILE, read_results
from dptrain.tracking.base import flatten_config as dotted_config

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
EPSILON_KEY = "privacy/epsilon"
# Config keys that define the privacy level: an ε plot's x axis, not a separate series.
EPSILON_AXES = ("privacy.epsilon", "privacy.mode")
# Config keys that differ between runs without changing what a run measures.
IGNORED_KEYS = frozenset(
    {
        "seed",
        "name",
        "audit.workers",
        "audit.executor",
        "audit.ray_address",
        "audit.submitit_cluster",
        "audit.slurm_partition",
        "audit.slurm_time_minutes",
        "audit.slurm_cpus_per_task",
        "audit.slurm_options",
        "train.device",
        "train.threads",
    }
)
IGNORED_PREFIXES = ("tracker.", "hydra.")
# A key whose last part names a location (data.path, audit.submitit_folder, ...) is not an axis.
_LOCATION = re.compile(r"(path|dir|folder|file|address|root)s?$")
# What marks a directory as a run's, when it holds no complete results.json.
_RUN_MARKERS = (".dptrain.lock", ".hydra", f"{RESULTS_FILE}.partial")


@dataclass(frozen=True)
class SweepRun:
    """One finished run, as its saved files describe it.

    Attributes:
        run_dir: The run directory.
        config: The run's configuration, flattened to dotted keys (lists as tuples).
        summary: The run's flat ``summary`` block (``privacy/epsilon``, ``utility/auroc``, ...).
        patient_auc: Per-patient membership AUC from ``patient_risk.csv``, shape (n_patients,)
            float64; None when the run had no audit.
    """

    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    patient_auc: np.ndarray | None = field(default=None, compare=False)

    @property
    def seed(self) -> Any:
        """The run's seed (from the summary, else the config)."""
        return self.summary.get("run/seed", self.config.get("seed"))


@dataclass(frozen=True)
class SkippedRun:
    """A run directory left out of the report, and why (not finished, unreadable, old schema)."""

    run_dir: Path
    reason: str


@dataclass(frozen=True)
class Estimate:
    """A summary number over the seeds of a group: mean and 95 % t-interval.

    Attributes:
        mean: Mean over the runs where the number is defined (NaN if none).
        low: Lower end of the interval; NaN with fewer than two values.
        high: Upper end of the interval; NaN with fewer than two values.
        n: How many runs define the number.
    """

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class SweepAxis:
    """A configuration key whose value differs between runs.

    Attributes:
        key: Dotted config key (``privacy.epsilon``, ``model.hidden``).
        values: Its values: ascending if all numeric (∞ last), else in order of appearance.
        numeric: Whether every value is a number.
    """

    key: str
    values: tuple[Any, ...]
    numeric: bool

    def sort_key(self, value: Any) -> float:
        """Position of ``value`` among the axis's values (for ordering groups)."""
        return float(self.values.index(value))


@dataclass(frozen=True)
class SweepGroup:
    """Runs that differ only in seed, with their numbers aggregated.

    Attributes:
        axis_values: Swept axis key -> this group's value, in the sweep's axis order.
        runs: The group's runs, in seed order.
        metrics: Summary key -> `Estimate` over the runs, for every numeric summary entry.
    """

    axis_values: dict[str, Any]
    runs: tuple[SweepRun, ...]
    metrics: dict[str, Estimate]

    @property
    def seeds(self) -> tuple[Any, ...]:
        """The seeds of the group's runs."""
        return tuple(run.seed for run in self.runs)

    @property
    def epsilon(self) -> float:
        """The ε the group's runs spent (∞ for the non-private baseline; NaN if unknown)."""
        estimate = self.metrics.get(EPSILON_KEY)
        return math.nan if estimate is None else estimate.mean

    def metric(self, key: str) -> Estimate:
        """The estimate of summary ``key``; undefined (NaN, n = 0) where no run has it."""
        return self.metrics.get(key, Estimate(math.nan, math.nan, math.nan, 0))


@dataclass(frozen=True)
class Sweep:
    """Runs grouped by their swept axes, seeds aggregated.

    Attributes:
        axes: The swept configuration keys (ε first), seed excluded.
        groups: One per distinct combination of axis values, ordered by the axes (ε ascending,
            the non-private ∞ last).
        skipped: Run directories left out, with the reason.
        confidence: Coverage of the intervals.
    """

    axes: tuple[SweepAxis, ...]
    groups: tuple[SweepGroup, ...]
    skipped: tuple[SkippedRun, ...] = ()
    confidence: float = CONFIDENCE

    @property
    def runs(self) -> tuple[SweepRun, ...]:
        """Every run of the sweep, group by group."""
        return tuple(run for group in self.groups for run in group.runs)

    @property
    def epsilon_varies(self) -> bool:
        """Whether the groups spent different ε (then ε is a plot's x axis)."""
        values = {round(group.epsilon, 6) for group in self.groups if not math.isnan(group.epsilon)}
        return len(values) > 1

    @property
    def other_axes(self) -> tuple[SweepAxis, ...]:
        """The swept axes other than the privacy level (model width, cohort size, ...)."""
        return tuple(axis for axis in self.axes if axis.key not in EPSILON_AXES)

    @property
    def has_audit(self) -> bool:
        """Whether any run carries audit numbers."""
        return any("audit/best_attack_auc" in run.summary for run in self.runs)


def estimate(
    values: Iterable[float | None],
    *,
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Estimate:
    """Mean and two-sided Student-t interval of values over seeds.

    Undefined values (None, NaN) are left out. With one value there is no interval; identical
    infinite values (ε of the non-private baseline) give that value with a zero-width interval.
    With two or three seeds the t-interval is wide and may leave a number's range (an AUC above
    1): it is cut to ``bounds``.

    Args:
        values: One value per run.
        confidence: Interval coverage.
        bounds: The range the number lives in (``(0, 1)`` for AUCs, shares and rates).

    Returns:
        The `Estimate`.

    Example:
        >>> e = estimate([0.70, 0.72, 0.74])
        >>> round(e.mean, 3), round(e.low, 4), round(e.high, 4), e.n
        (0.72, 0.6703, 0.7697, 3)
    """
    defined = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(defined)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if not np.isfinite(defined).all():
        if (defined == defined[0]).all():
            return Estimate(float(defined[0]), float(defined[0]), float(defined[0]), n)
        return Estimate(float(defined.mean()), math.nan, math.nan, n)
    mean = float(defined.mean())
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1)
    half_width = stats.t.ppf(0.5 + confidence / 2, n - 1) * defined.std(ddof=1) / math.sqrt(n)
    low, high = max(mean - float(half_width), bounds[0]), min(mean + float(half_width), bounds[1])
    return Estimate(mean, low, high, n)


def summarize_sweep(
    runs: Sequence[SweepRun],
    *,
    skipped: Sequence[SkippedRun] = (),
    confidence: float = CONFIDENCE,
) -> Sweep:
    """Finds the swept axes, groups the runs by them and aggregates each group's seeds.

    Args:
        runs: Finished runs, in the order they should appear where no other order applies.
        skipped: Run directories left out, carried into the report.
        confidence: Coverage of the intervals over seeds.

    Returns:
        The `Sweep`.

    Raises:
        DataError: If there are no runs.
    """
    if not runs:
        raise DataError("no finished runs to compare: run `dptrain -m ...` first")
    axes = detect_axes(runs)
    grouped: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        grouped.setdefault(tuple(run.config.get(axis.key) for axis in axes), []).append(run)
    ordered = sorted(
        grouped.items(),
        key=lambda item: tuple(axis.sort_key(value) for axis, value in zip(axes, item[0])),
    )
    groups = tuple(
        _group(dict(zip((axis.key for axis in axes), key)), members, confidence)
        for key, members in ordered
    )
    return Sweep(axes=axes, groups=groups, skipped=tuple(skipped), confidence=confidence)


def detect_axes(runs: Sequence[SweepRun]) -> tuple[SweepAxis, ...]:
    """The config keys whose values differ between runs (seed, paths and names left out).

    Example:
        >>> runs = [
        ...     SweepRun(Path(f"r{i}"), {"seed": s, "privacy.epsilon": e, "data.path": f"/{i}"}, {})
        ...     for i, (e, s) in enumerate([(float("inf"), 0), (1.0, 0), (1.0, 1)])
        ... ]
        >>> [(axis.key, axis.values) for axis in detect_axes(runs)]
        [('privacy.epsilon', (1.0, inf))]
    """
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    axes = []
    for key in keys:
        if not _may_be_axis(key):
            continue
        values = list(dict.fromkeys(run.config.get(key) for run in runs))
        if len(values) < 2:
            continue
        numeric = all(_is_number(value) for value in values)
        if numeric:
            values.sort()
        axes.append(SweepAxis(key=key, values=tuple(values), numeric=numeric))
    axes.sort(key=lambda axis: axis.key not in EPSILON_AXES)  # stable: ε first, then config order
    return tuple(axes)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys, as the trackers log it, with hashable values.

    Lists become tuples so that values can be compared and grouped.

    Example:
        >>> flatten_config({"model": {"hidden": [64, 64]}, "seed": 0})
        {'model.hidden': (64, 64), 'seed': 0}
    """
    return {key: _hashable(value) for key, value in dotted_config(config, prefix).items()}


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories under ``paths``: each path is a run directory or a folder searched for them.

    A run directory is one holding ``results.json`` or the marks a started run leaves (its lock
    file, Hydra's ``.hydra/``), so runs that did not finish are found too and can be named.

    Raises:
        DataError: If a path does not exist.
    """
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path} does not exist: give run directories or a multirun folder")
        if path.is_file():
            if path.name != RESULTS_FILE:
                raise DataError(f"{path} is not a {RESULTS_FILE}: give run directories instead")
            found[path.parent.resolve()] = None
            continue
        candidates = [path, *(p for p in path.rglob("*") if p.is_dir())]
        for candidate in sorted(candidates, key=_natural_key):
            if _is_run_dir(candidate):
                found[candidate.resolve()] = None
    return list(found)


def load_runs(run_dirs: Sequence[Path]) -> tuple[list[SweepRun], list[SkippedRun]]:
    """Reads each run directory's ``results.json`` and per-patient risk.

    A directory without a complete, current ``results.json`` is skipped with a one-line warning.

    Returns:
        (finished runs, skipped run directories).
    """
    runs, skipped = [], []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except DataError as error:
            log.warning("skipping %s", error)
            skipped.append(SkippedRun(Path(run_dir), str(error)))
    return runs, skipped


def load_run(run_dir: Path) -> SweepRun:
    """Reads one run directory.

    Raises:
        DataError: If it has no complete ``results.json`` with a summary.
    """
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {RESULTS_FILE} (the run failed or has not finished)")
    try:
        results = read_results(path)
    except (ValueError, OSError) as error:  # JSONDecodeError is a ValueError
        raise DataError(f"{run_dir}: unreadable {RESULTS_FILE} ({error})") from error
    if not isinstance(results.get("summary"), dict) or not isinstance(results.get("config"), dict):
        raise DataError(
            f"{run_dir}: {RESULTS_FILE} has schema {results.get('schema_version')} without a "
            "summary block; rerun it with this dptrain version"
        )
    return SweepRun(
        run_dir=run_dir,
        config=flatten_config(results["config"]),
        summary=results["summary"],
        patient_auc=_patient_auc(run_dir / PATIENT_RISK_FILE),
    )


def load_sweep(paths: Sequence[str | Path], *, confidence: float = CONFIDENCE) -> Sweep:
    """Finds, loads and summarises the runs under ``paths``.

    Raises:
        DataError: If a path does not exist or no finished run is found.
    """
    run_dirs = find_run_dirs(paths)
    runs, skipped = load_runs(run_dirs)
    if not runs:
        where = ", ".join(map(str, paths))
        raise DataError(
            f"no finished runs (no complete {RESULTS_FILE} with a summary) under {where}"
            + (f"; {len(skipped)} unfinished or unreadable" if skipped else "")
        )
    return summarize_sweep(runs, skipped=skipped, confidence=confidence)


def format_value(value: Any) -> str:
    """An axis value as a label: ``∞`` for infinity, lists in brackets.

    Example:
        >>> format_value(float("inf")), format_value((64, 64)), format_value(0.5)
        ('∞', '[64, 64]', '0.5')
    """
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def _group(axis_values: dict[str, Any], runs: list[SweepRun], confidence: float) -> SweepGroup:
    runs = sorted(runs, key=lambda run: (_sortable(run.seed), _natural_key(run.run_dir)))
    seeds = [run.seed for run in runs]
    if len(set(map(str, seeds))) < len(seeds):
        log.warning(
            "runs with the same config and seed are counted separately: %s",
            ", ".join(str(run.run_dir) for run in runs),
        )
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(k for k, v in run.summary.items() if _is_number(v)))
    metrics = {
        key: estimate(
            (run.summary.get(key) if _is_number(run.summary.get(key)) else None for run in runs),
            confidence=confidence,
            bounds=_bounds(key),
        )
        for key in keys
    }
    return SweepGroup(axis_values=axis_values, runs=tuple(runs), metrics=metrics)


def _bounds(key: str) -> tuple[float, float]:
    """The range a summary number lives in, where a seed interval is cut.

    [0, 1] for AUCs, rates and shares, [0, ∞) for patient counts, else unbounded (an ε lower
    bound's interval may go below 0).
    """
    name = key.rsplit("/", 1)[-1]
    if key.startswith("utility/") or "tpr_at_fpr" in name or "share" in name:
        return (0.0, 1.0)
    if name.startswith("patients_"):
        return (0.0, math.inf)
    return (0.0, 1.0) if "auc" in name else (-math.inf, math.inf)


def _may_be_axis(key: str) -> bool:
    if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
        return False
    return not _LOCATION.search(key.rsplit(".", 1)[-1])


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).exists() for marker in (RESULTS_FILE, *_RUN_MARKERS))


def _patient_auc(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, usecols=["auc"])
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DataError(f"{path.parent}: unreadable {path.name} ({error})") from error
    return frame["auc"].to_numpy(dtype=float)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def _sortable(value: Any) -> tuple[int, Any]:
    return (0, value) if _is_number(value) else (1, str(value))


def _natural_key(path: Path) -> list[Any]:
    """Sorts ``2-run`` before ``10-run`` (Hydra numbers multirun jobs without padding)."""
    return [
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", str(path))
    ]
