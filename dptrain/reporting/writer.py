"""Writes a run directory: checkpoint, report, plots, tables, then ``results.json`` last.

A run is done when, and only when, ``results.json`` exists: it is written after everything else.
The checkpoint, the report and ``results.json`` are each written atomically (temporary file,
fsync, rename), so a run killed at any moment leaves each of them complete or absent. A write that
fails (a full disk) is a `ConfigError` naming the file: the run stops, no ``results.json``. The
tracker gets the headline numbers and files after that, and fails soft.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dptrain.atomic import atomic_write_text
from dptrain.errors import ConfigError
from dptrain.reporting.audit_markdown import audit_sections as render_audit_sections
from dptrain.reporting.dp_audit_markdown import dp_audit_section
from dptrain.reporting.markdown import render_report
from dptrain.reporting.patients import patient_risk_frame, write_patient_risk
from dptrain.reporting.plots import write_audit_plots
from dptrain.reporting.results import RESULTS_FILE, RunReport, results_dict
from dptrain.reporting.summary import numeric_summary
from dptrain.tracking.base import Tracker
from dptrain.training.checkpoint import save_checkpoint
from dptrain.training.fit import TrainedModel

log = logging.getLogger(__name__)
REPORT_FILE = "report.md"
CHECKPOINT_FILE = "model.pt"


def headline_metrics(report: RunReport) -> dict[str, float]:
    """The numbers a sweep compares, for trackers: the run summary's numeric entries."""
    return numeric_summary(report)


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
    try:
        files, images, report_path = _write_files(report, model=model, output_dir=output_dir)
    except OSError as error:
        raise ConfigError(
            f"hydra.run.dir: cannot write {error.filename or output_dir} "
            f"({error.strerror or error}); the run wrote no results.json: free disk space or "
            "point hydra.run.dir at another folder, then run again"
        ) from error

    tracker.log_summary(headline_metrics(report))
    if report.audit is not None:
        tracker.log_table("patient_risk", patient_risk_frame(report.audit))
        tracker.log_images(images)
    tracker.log_artifact("report", "report", [report_path, files["results"]])
    return files


def _write_files(
    report: RunReport, *, model: TrainedModel, output_dir: Path
) -> tuple[dict[str, Path], dict[str, Path], Path]:
    """Checkpoint, audit files, plots, report, then ``results.json`` (atomically, last)."""
    cohort = report.data.get("cohort", {})
    files = {
        "checkpoint": save_checkpoint(
            model,
            output_dir / CHECKPOINT_FILE,
            model_config=report.config.get("model", {}),
            frontend=report.training.get("frontend"),
            input_shape=cohort.get("feature_shape", ()),
            class_names=cohort.get("label_names", ()),
        )
    }
    audit_sections: list[str] = []
    images: dict[str, Path] = {}
    if report.audit is not None:
        files["patient_risk"] = write_patient_risk(report.audit, output_dir)
        images = write_audit_plots(report.audit, output_dir)
        files |= images
        audit_sections = render_audit_sections(report, images=images)
    dp_audit_sections = [dp_audit_section(report)] if report.dp_audits else []
    report_text = render_report(
        report, audit_sections=audit_sections, dp_audit_sections=dp_audit_sections
    )
    report_path = atomic_write_text(output_dir / REPORT_FILE, report_text)
    files["report"] = report_path
    results_text = json.dumps(results_dict(report), indent=2, allow_nan=False)
    files["results"] = atomic_write_text(output_dir / RESULTS_FILE, results_text)
    return files, images, report_path
