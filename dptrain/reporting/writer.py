"""Writes a run directory: checkpoint, report, plots, tables, then ``results.json`` last.

A run is done when, and only when, ``results.json`` exists: it is written after everything else,
atomically. The tracker gets the headline numbers and files after that, and fails soft.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dptrain.reporting.audit_markdown import audit_headline_metrics
from dptrain.reporting.audit_markdown import audit_sections as render_audit_sections
from dptrain.reporting.markdown import render_report
from dptrain.reporting.patients import patient_risk_frame, write_patient_risk
from dptrain.reporting.plots import write_audit_plots
from dptrain.reporting.results import RunReport, write_results
from dptrain.tracking.base import Tracker
from dptrain.training.checkpoint import save_checkpoint
from dptrain.training.fit import TrainedModel

log = logging.getLogger(__name__)
REPORT_FILE = "report.md"
CHECKPOINT_FILE = "model.pt"


def headline_metrics(report: RunReport) -> dict[str, float]:
    """The numbers a sweep compares: budget, utility, and (with an audit) measured leakage."""
    spend, overall = report.privacy, report.utility.overall
    metrics = {
        "privacy/epsilon": spend.epsilon,
        "privacy/epsilon_rdp": spend.epsilon_rdp,
        "privacy/delta": spend.delta,
        "privacy/noise_multiplier": spend.noise_multiplier,
        "privacy/sample_rate": spend.sample_rate,
        "privacy/steps": float(spend.steps),
        "utility/auroc": overall.auroc,
        "utility/auprc": overall.auprc,
        "utility/accuracy": overall.accuracy,
        "utility/balanced_accuracy": overall.balanced_accuracy,
    }
    if report.audit is not None:
        metrics |= audit_headline_metrics(report.audit)
    return metrics


def write_run(
    report: RunReport, *, model: TrainedModel, output_dir: Path, tracker: Tracker
) -> dict[str, Path]:
    """Writes every file of the run and hands the tracker its summary and artifacts.

    Args:
        report: The run's results.
        model: The deployed model (for the checkpoint).
        output_dir: The run directory.
        tracker: Where headline numbers, tables, plots and the report go.

    Returns:
        Name -> path of each file written.
    """
    output_dir = Path(output_dir)
    files = {
        "checkpoint": save_checkpoint(
            model,
            output_dir / CHECKPOINT_FILE,
            model_config=report.config.get("model", {}),
            frontend=report.training.get("frontend"),
        )
    }
    audit_sections: list[str] = []
    images: dict[str, Path] = {}
    if report.audit is not None:
        files["patient_risk"] = write_patient_risk(report.audit, output_dir)
        images = write_audit_plots(report.audit, output_dir)
        files |= images
        audit_sections = render_audit_sections(report, images=images)
    report_path = output_dir / REPORT_FILE
    report_path.write_text(render_report(report, audit_sections=audit_sections))
    files["report"] = report_path
    files["results"] = write_results(report, output_dir)

    tracker.log_summary(headline_metrics(report))
    if report.audit is not None:
        tracker.log_table("patient_risk", patient_risk_frame(report.audit))
        tracker.log_images(images)
    tracker.log_artifact("report", "report", [report_path, files["results"]])
    return files
