"""The audit's figures (PNG): ROC against the DP bound, patient-risk survival curve, histogram.

The survival curve carries the noise floor at the risk thresholds: the share of patients above
each threshold when the membership effect is removed (`dptrain.audit.null`).

Low false-positive rates matter most (Carlini et al. 2022): ROC curves are drawn log-log, and the
patient-risk survival curve uses a log y-axis so that the few most exposed patients stay visible.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (headless servers, CI)
import matplotlib.pyplot as plt
import numpy as np

from dptrain.audit.result import AuditResult
from dptrain.audit.subgroups import WHOLE_COHORT

ROC_FILE = "roc.png"
SURVIVAL_FILE = "patient_risk_survival.png"
HISTOGRAM_FILE = "patient_risk_histogram.png"
KNOWLEDGE_FILE = "exposure_by_knowledge.png"


def write_audit_plots(audit: AuditResult, run_dir: Path) -> dict[str, Path]:
    """Draws the three figures into ``run_dir``.

    Args:
        audit: An `AuditResult`.
        run_dir: Where the PNG files go.

    Returns:
        Plot name -> path.
    """
    run_dir = Path(run_dir)
    plots = {
        "roc": _save(plot_roc(audit), run_dir / ROC_FILE),
        "patient_risk_survival": _save(plot_survival(audit), run_dir / SURVIVAL_FILE),
        "patient_risk_histogram": _save(plot_histogram(audit), run_dir / HISTOGRAM_FILE),
    }
    if audit.knowledge is not None and len(audit.knowledge.thresholds):
        plots["exposure_by_knowledge"] = _save(plot_knowledge(audit), run_dir / KNOWLEDGE_FILE)
    return plots


def plot_roc(audit: AuditResult) -> plt.Figure:
    """Log-log ROC of every attack with the DP-implied maximum TPR at each FPR."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    floor = 1.0 / max(attack.metrics.n_nonmembers for attack in audit.attacks)
    for attack in audit.attacks:
        metrics = attack.metrics
        axes.plot(
            np.maximum(metrics.roc_fpr, floor),
            np.maximum(metrics.roc_tpr, floor),
            label=f"{attack.name} (AUC {metrics.auc:.3f})",
        )
    for bound, style, label in _bound_curves(audit):
        visible = bound.fpr >= floor
        axes.plot(bound.fpr[visible], bound.max_tpr[visible], style, color="black", label=label)
    axes.plot([floor, 1], [floor, 1], ":", color="grey", label="chance")
    axes.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05))
    axes.set(xlabel="false positive rate", ylabel="true positive rate")
    axes.set_title(f"Membership inference, {audit.num_models} models, (model, patient) pairs")
    axes.legend(fontsize=8, loc="lower right")
    return figure


def plot_survival(audit: AuditResult) -> plt.Figure:
    """Share of patients with AUC ≥ x (log y), overall and per subgroup, with the DP maximum."""
    risk = audit.patient_risk
    attributes = list(risk.attributes)
    columns = max(1, min(3, len(attributes)))
    rows = max(1, int(np.ceil(len(attributes) / columns)))
    figure, grid = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False, sharey=True
    )
    thresholds = np.linspace(0.5, 1.0, 201)
    panels = attributes or [WHOLE_COHORT]
    for axes, attribute in zip(grid.ravel(), panels):
        _survival(axes, risk.auc, thresholds, WHOLE_COHORT, color="black", linewidth=2)
        _survival(
            axes,
            risk.lower_bound,
            thresholds,
            f"{WHOLE_COHORT}, {risk.confidence:.0%} lower bound",
            color="black",
            linestyle=":",
        )
        if attribute in risk.attributes:
            for value in np.unique(risk.attributes[attribute]):
                members = risk.attributes[attribute] == value
                _survival(axes, risk.auc[members], thresholds, f"{value} ({members.sum()})")
        _dp_line(axes, audit)
        _null_floor_marks(axes, audit)
        axes.set(yscale="log", xlabel="patient AUC", title=str(attribute), xlim=(0.5, 1.0))
        axes.legend(fontsize=7)
    for axes in grid.ravel()[len(panels) :]:
        axes.set_visible(False)
    for axes in grid[:, 0]:
        axes.set_ylabel("share of patients with AUC ≥ x")
    figure.suptitle(f"Per-patient membership risk ({risk.aggregation} over records)")
    figure.tight_layout()
    return figure


def plot_histogram(audit: AuditResult) -> plt.Figure:
    """Histogram of patient AUC, with the DP-implied maximum."""
    risk = audit.patient_risk
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    auc = risk.auc[~np.isnan(risk.auc)]
    axes.hist(auc, bins=np.linspace(min(0.0, auc.min(initial=0.5)), 1.0, 51), color="tab:blue")
    _dp_line(axes, audit)
    axes.set(xlabel="patient AUC", ylabel="patients", yscale="log")
    axes.set_title(f"Patient risk, {len(auc)} patients, K = {audit.num_models}")
    if axes.get_legend_handles_labels()[1]:  # the non-private baseline has no DP line
        axes.legend(fontsize=8)
    return figure


def plot_knowledge(audit: AuditResult) -> plt.Figure:
    """Exposed share at the first risk threshold against attacker knowledge, one line per subgroup.

    The whole cohort is drawn thick and black, with its Clopper–Pearson interval as a band and
    its noise floor dotted; every subgroup value is a thin line.
    """
    curve = audit.knowledge
    x = np.arange(len(curve.levels))
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for position, row in enumerate(curve.levels[0].rows):
        rows = [result.rows[position] for result in curve.levels]
        share = np.array([r.exposed[0] / r.n_patients if r.n_patients else np.nan for r in rows])
        if position == 0:
            interval = np.array([r.exposed_interval[0] for r in rows])
            axes.fill_between(x, interval[:, 0], interval[:, 1], color="black", alpha=0.12)
            floor = np.array([r.exposed_floor[0] / r.n_patients for r in rows])
            axes.plot(x, floor, ":", color="grey", label="noise floor (all patients)")
            axes.plot(x, share, "o-", color="black", linewidth=2.2, label=WHOLE_COHORT)
        else:
            axes.plot(x, share, ".-", linewidth=0.9, label=f"{row.attribute} = {row.value}")
    axes.set_xticks(x, [result.level for result in curve.levels])
    axes.set(
        xlabel="what the attacker knows",
        ylabel=f"share of patients with AUC > {curve.thresholds[0]:g}",
    )
    axes.set_title("Exposure by attacker knowledge")
    axes.legend(fontsize=6, ncol=2, loc="upper left")
    return figure


def _bound_curves(audit: AuditResult):
    bounds = audit.bounds
    if bounds.record.method == "non-private":
        return []
    if bounds.record.method == "not-applicable":  # patient-level DP: one bound, per patient
        return [(bounds.patient, "-.", f"DP bound, patient (AUC ≤ {bounds.patient.max_auc:.3f})")]
    curves = [(bounds.record, "--", f"DP bound, record (AUC ≤ {bounds.record.max_auc:.3f})")]
    if bounds.group_size > 1:
        curves.append(
            (
                bounds.patient,
                "-.",
                f"DP bound, {bounds.group_size} records (AUC ≤ {bounds.patient.max_auc:.3f})",
            )
        )
    return curves


def _survival(axes, auc: np.ndarray, thresholds: np.ndarray, label: str, **style) -> None:
    auc = auc[~np.isnan(auc)]
    if len(auc) == 0:
        return
    share = (auc[None, :] >= thresholds[:, None]).mean(axis=1)
    visible = share > 0
    axes.step(thresholds[visible], share[visible], where="post", label=label, **style)


def _null_floor_marks(axes: plt.Axes, audit: AuditResult) -> None:
    """The noise floor at each risk threshold: share above it with no membership effect.

    Grey marks at the mean over re-labellings, bars up to the floor's level quantile; a curve
    near them is what K models and this many patients show by chance. Zero shares (invisible on
    the log axis) are left out.
    """
    floor = audit.null_floor
    if floor.repeats == 0 or len(floor.thresholds) == 0:
        return
    bands = [floor.band(floor.share_above[:, index]) for index in range(len(floor.thresholds))]
    mean = np.array([band[0] for band in bands])
    upper = np.array([band[1] for band in bands])
    shown = np.isfinite(mean) & (upper > 0)
    if not shown.any():
        return
    low = np.where(mean[shown] > 0, mean[shown], upper[shown])
    axes.errorbar(
        floor.thresholds[shown],
        low,
        yerr=[np.zeros(shown.sum()), upper[shown] - low],
        fmt="x",
        color="grey",
        capsize=3,
        label=f"noise floor (mean, {floor.level:.0%} level)",
    )


def _dp_line(axes: plt.Axes, audit: AuditResult) -> None:
    bound = audit.bounds.patient
    if bound.method != "non-private":
        axes.axvline(
            bound.max_auc, color="red", linestyle="--", label=f"DP maximum ({bound.max_auc:.3f})"
        )


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
