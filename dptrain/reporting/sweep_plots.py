"""The sweep report's figures: privacy–utility, leakage vs ε (or any swept axis), patient risk.

ε is drawn on a log axis; the non-private baseline (ε = ∞) cannot sit on it, so it is a separate
point to the right of a dotted divider, labelled ∞, never joined to the finite-ε line. Error bars
are the 95 % intervals over seeds. A sweep over another axis (model width, cohort size) gets a
leakage plot over that axis, one line per privacy level: the per-patient-risk-vs-capacity curve.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (headless servers, CI)
import matplotlib.pyplot as plt
import numpy as np

from dptrain.reporting.sweep import EPSILON_AXES, Sweep, SweepGroup, format_value
from dptrain.reporting.sweep_markdown import subgroup_share_suffix

EPSILON = "epsilon"  # the x-axis key meaning "the ε each group spent"
UTILITY_KEY = "utility/auroc"
INFINITY_LABEL = "∞\n(no DP)"
# (summary key, legend label, line style, marker) of the leakage figure.
LEAKAGE_LINES = (
    ("audit/best_attack_auc", "best attack AUC", "-", "o"),
    ("audit/patient_auc_p99", "patient AUC p99", "-", "s"),
    ("audit/dp_max_auc_patient", "DP-implied max patient AUC", "--", "_"),
    ("audit/null_patient_auc_p99", "noise floor (patient AUC p99, no leakage)", ":", "x"),
)


def sweep_figures(sweep: Sweep) -> dict[str, tuple[str, plt.Figure]]:
    """Every figure the sweep supports.

    Returns:
        PNG file name -> (caption, figure), in report order. Callers close the figures
        (`figure_png` does).
    """
    axes = x_axes(sweep)
    figures: dict[str, tuple[str, plt.Figure]] = {}
    first = axes[0]
    figures["sweep_privacy_utility.png"] = (
        f"Test AUROC vs {_axis_title(first)}, mean and 95 % interval over seeds",
        plot_utility(sweep, x_key=first),
    )
    if sweep.has_audit:
        for key in axes:
            name = "epsilon" if key == EPSILON else _file_part(key)
            figures[f"sweep_leakage_vs_{name}.png"] = (
                f"Measured leakage vs {_axis_title(key)}, with the DP-implied bound and the "
                "noise floor",
                plot_leakage(sweep, x_key=key),
            )
    if any(run.patient_auc is not None for run in sweep.runs):
        figures["sweep_patient_risk_survival.png"] = (
            "Share of patients whose membership AUC exceeds x, every run",
            plot_patient_risk_survival(sweep),
        )
    if subgroup_share_suffix(sweep) is not None:
        figures["sweep_subgroup_disparity.png"] = (
            f"Share of each subgroup's patients above the risk threshold vs {_axis_title(first)}",
            plot_subgroup_disparity(sweep, x_key=first),
        )
    return figures


def x_axes(sweep: Sweep) -> list[str]:
    """The x axes the sweep's curves are drawn over: ε (if it varies), then each other axis."""
    axes = [EPSILON] if sweep.epsilon_varies or not sweep.other_axes else []
    return axes + [axis.key for axis in sweep.other_axes]


def figure_png(figure: plt.Figure) -> bytes:
    """The figure as PNG bytes; closes it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def plot_utility(sweep: Sweep, *, x_key: str = EPSILON, metric: str = UTILITY_KEY) -> plt.Figure:
    """Utility vs ε (or another swept axis), one line per combination of the other axes."""
    figure, axes = plt.subplots(figsize=(6, 4.2))
    placement = _Placement(sweep, x_key)
    series = _series(sweep, x_key)
    for index, (label, groups) in enumerate(series):
        _draw(
            axes,
            placement,
            groups,
            metric,
            color=f"C{index}",
            label=label or None,
            dodge=_dodge(index, len(series)),
        )
    placement.apply(axes)
    axes.set(ylabel="test AUROC", title="Privacy–utility")
    _legend(axes)
    return figure


def plot_leakage(sweep: Sweep, *, x_key: str = EPSILON) -> plt.Figure:
    """Measured leakage, the DP-implied maximum and the noise floor vs ε or another axis."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    placement = _Placement(sweep, x_key)
    series = _series(sweep, x_key)
    for index, (series_label, groups) in enumerate(series):
        for key, label, style, marker in LEAKAGE_LINES:
            _draw(
                axes,
                placement,
                groups,
                key,
                color=f"C{index}",
                label=f"{label}{f' ({series_label})' if series_label else ''}",
                linestyle=style,
                marker=marker,
                dodge=_dodge(index, len(series)),
            )
    placement.apply(axes)
    axes.axhline(0.5, color="grey", linewidth=0.8)
    axes.set(ylabel="AUC", ylim=(0.45, 1.02), title="Membership-inference leakage")
    _legend(axes)
    return figure


def plot_patient_risk_survival(sweep: Sweep) -> plt.Figure:
    """Share of patients with AUC > x for every run on one chart; one colour per group."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    grid = np.linspace(0.5, 1.0, 201)
    most_patients = max(len(r.patient_auc) for r in sweep.runs if r.patient_auc is not None)
    floor = 0.5 / most_patients
    for index, group in enumerate(sweep.groups):
        label = _group_label(group, sweep) or "all runs"
        for run in group.runs:
            if run.patient_auc is None:
                continue
            share = (run.patient_auc[None, :] > grid[:, None]).mean(axis=1)
            axes.step(grid, np.maximum(share, floor), where="post", color=f"C{index}", label=label)
            label = None  # one legend entry per group, not per seed
    axes.set(xlim=(0.5, 1.0), yscale="log", ylim=(floor, 1.05))
    axes.set(xlabel="patient membership AUC x", ylabel="share of patients with AUC > x")
    axes.set_title("Patient-risk survival (every run; seeds share a colour)")
    _legend(axes)
    return figure


def plot_subgroup_disparity(sweep: Sweep, *, x_key: str = EPSILON) -> plt.Figure:
    """Share of each subgroup's patients above the risk threshold, vs ε or another axis."""
    suffix = subgroup_share_suffix(sweep) or ""
    keys = list(
        dict.fromkeys(
            key
            for run in sweep.runs
            for key in run.summary
            if key.startswith("subgroup/") and key.endswith(suffix)
        )
    )
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    placement = _Placement(sweep, x_key)
    styles = ("-", "--", ":", "-.")
    for series_index, (series_label, groups) in enumerate(_series(sweep, x_key)):
        for index, key in enumerate(keys):
            name = key.removeprefix("subgroup/").removesuffix(suffix)
            _draw(
                axes,
                placement,
                groups,
                key,
                color=f"C{index}",
                label=f"{name}{f' ({series_label})' if series_label else ''}",
                linestyle=styles[series_index % len(styles)],
                dodge=_dodge(index, len(keys)),
            )
    placement.apply(axes)
    threshold = suffix.removeprefix("/share_above_")
    axes.set(ylabel=f"share of patients with AUC > {threshold}", ylim=(-0.02, 1.02))
    axes.set_title("Leakage by subgroup")
    _legend(axes)
    return figure


class _Placement:
    """Where each x value goes: log ε with ∞ apart, a numeric axis, or categories in order."""

    def __init__(self, sweep: Sweep, x_key: str) -> None:
        self.epsilon = x_key == EPSILON
        self.key = x_key
        if self.epsilon:
            values = {g.epsilon for g in sweep.groups if not math.isnan(g.epsilon)}
            self.finite = sorted(v for v in values if math.isfinite(v))
            self.has_infinity = any(math.isinf(v) for v in values)
            self.infinity = self.finite[-1] * 4 if self.finite else 1.0
            self.values: Sequence[Any] = [*self.finite, *([math.inf] * self.has_infinity)]
            return
        axis = next(axis for axis in sweep.axes if axis.key == x_key)
        self.values = axis.values
        self.numeric = axis.numeric and all(math.isfinite(v) for v in axis.values)
        positive = self.numeric and min(axis.values) > 0
        self.log = positive and max(axis.values) / min(axis.values) >= 8

    def x(self, group: SweepGroup) -> float:
        """The group's x position (NaN if it has none)."""
        if self.epsilon:
            value = group.epsilon
            return self.infinity if math.isinf(value) else value
        value = group.axis_values[self.key]
        return float(value) if self.numeric else float(self.values.index(value))

    def shift(self, x: float, fraction: float) -> float:
        """``x`` moved sideways by ``fraction`` of a step (a factor of two on a log axis)."""
        if self.epsilon or (self.numeric and self.log):
            return x * 2.0**fraction
        if self.numeric:
            values = sorted(float(v) for v in self.values)
            step = min(np.diff(values)) if len(values) > 1 else 1.0
            return x + fraction * step
        return x + fraction

    def separate(self, group: SweepGroup) -> bool:
        """Whether the point stands apart (ε = ∞), not joined to the line."""
        return self.epsilon and math.isinf(group.epsilon)

    def apply(self, axes: plt.Axes) -> None:
        if self.epsilon:
            axes.set_xscale("log")
            ticks = [*self.finite, *([self.infinity] * self.has_infinity)]
            labels = [f"{v:.3g}" for v in self.finite] + [INFINITY_LABEL] * self.has_infinity
            if self.finite and self.has_infinity:
                axes.axvline(math.sqrt(self.finite[-1] * self.infinity), color="grey", ls=":")
            axes.set_xticks(ticks, labels)
            axes.minorticks_off()
            low, high = min(ticks), max(ticks)
            axes.set_xlim(low / 1.6, high * 1.6)
            axes.set_xlabel("ε (spent; ∞ = non-private baseline, same recipe)")
            return
        if self.numeric:
            if self.log:
                axes.set_xscale("log", base=2)
            axes.set_xticks([float(v) for v in self.values], [format_value(v) for v in self.values])
            axes.minorticks_off()
        else:
            axes.set_xticks(range(len(self.values)), [format_value(v) for v in self.values])
            axes.set_xlim(-0.5, len(self.values) - 0.5)
        axes.set_xlabel(self.key)


def _draw(
    axes: plt.Axes,
    placement: _Placement,
    groups: Sequence[SweepGroup],
    key: str,
    *,
    color: str,
    label: str | None,
    linestyle: str = "-",
    marker: str = "o",
    dodge: float = 0.0,
) -> None:
    """One quantity over the groups: a line through the joined points, ∞ as its own point.

    ``dodge`` shifts the points sideways by that fraction of a category (or of a factor two on
    a log axis), so overlapping series stay readable.
    """
    points = sorted(
        (
            (
                placement.shift(placement.x(group), dodge),
                group.metric(key),
                placement.separate(group),
            )
            for group in groups
        ),
        key=lambda point: point[0],
    )
    points = [p for p in points if not math.isnan(p[0]) and math.isfinite(p[1].mean)]
    joined = [p for p in points if not p[2]]
    apart = [p for p in points if p[2]]
    for subset, style in ((joined, linestyle), (apart, "none")):
        if not subset:
            continue
        x = [p[0] for p in subset]
        y = np.array([p[1].mean for p in subset])
        low = np.array([p[1].low for p in subset])
        high = np.array([p[1].high for p in subset])
        error = np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0)
        axes.errorbar(
            x,
            y,
            yerr=error,
            color=color,
            linestyle=style,
            marker=marker,
            markersize=10 if marker == "_" else 5,
            capsize=3,
            label=label,
        )
        label = None  # one legend entry for line and point


def _series(sweep: Sweep, x_key: str) -> list[tuple[str, list[SweepGroup]]]:
    """Groups split into lines by the axes other than x (ε-defining keys belong to an ε x)."""
    skip = set(EPSILON_AXES) if x_key == EPSILON else {x_key}
    series: dict[str, list[SweepGroup]] = {}
    for group in sweep.groups:
        label = ", ".join(
            f"{key}={format_value(value)}"
            for key, value in group.axis_values.items()
            if key not in skip
        )
        if x_key != EPSILON and "privacy.epsilon" not in group.axis_values:
            # the privacy level of each line, even when ε was not swept by its config key
            label = ", ".join(filter(None, [label, f"ε={format_value(round(group.epsilon, 2))}"]))
        series.setdefault(label, []).append(group)
    return list(series.items())


def _group_label(group: SweepGroup, sweep: Sweep) -> str:
    return ", ".join(
        f"{axis.key}={format_value(group.axis_values[axis.key])}" for axis in sweep.axes
    )


def _axis_title(key: str) -> str:
    return "ε" if key == EPSILON else f"`{key}`"


def _file_part(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)


def _dodge(index: int, count: int) -> float:
    """Sideways shift of series ``index`` of ``count``, so points at one x do not overlap."""
    return 0.06 * (index - (count - 1) / 2)


def _legend(axes: plt.Axes) -> None:
    """A legend beside the plot (the saved PNG grows to fit), never over the points."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
