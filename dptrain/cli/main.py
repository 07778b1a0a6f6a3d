"""The ``dptrain`` command: a Hydra app that trains, evaluates, audits and reports one run.

Errors a user can fix (bad config values, bad data) print as one line and exit with status 2;
``hydra.verbose=true`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dptrain.cli.config import CONFIG_DIR, build_run_config, register_schemas
from dptrain.cli.rundir import claim_run_directory
from dptrain.errors import DptrainError
from dptrain.pipeline import run
from dptrain.reporting.audit_markdown import audit_console_lines
from dptrain.reporting.results import RunReport
from dptrain.tracking.base import FailSoftTracker, NullTracker
from dptrain.tracking.pseudonyms import PatientIdGuard, pseudonym_key

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
log = logging.getLogger("dptrain")

register_schemas()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job of the app (one point of a multirun sweep); returns test AUROC for sweepers."""
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    try:
        with claim_run_directory(output_dir):
            run_config, tracker_config = build_run_config(cfg)
            plain_config = OmegaConf.to_container(cfg, resolve=True)
            tracker = FailSoftTracker(
                _open_tracker(tracker_config, output_dir, cfg.name, plain_config)
            )
            succeeded = False
            try:
                report = run(
                    run_config,
                    output_dir=output_dir,
                    tracker=tracker,
                    plain_config=plain_config,
                    progress=sys.stderr.isatty() or bool(hydra_config.verbose),
                )
                succeeded = True
            finally:
                tracker.close(success=succeeded)
    except DptrainError as error:
        if hydra_config.verbose:
            raise
        print(f"dptrain: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if hydra_config.verbose:
            raise
        saved = output_dir / "audit_models"
        kept = (
            f"; {len(list(saved.glob('model_*.npz')))} finished audit models are kept in {saved} "
            "and reused when the same command runs again into this directory"
            if saved.is_dir()
            else ""
        )
        print(
            f"dptrain: interrupted: the run did not finish, so {output_dir} has no results.json"
            f"{kept}",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    print(summary(report, output_dir))
    return report.utility.overall.auroc


def _open_tracker(tracker_config, output_dir: Path, run_name: str, plain_config: dict):
    """Opens the tracker; a tracker that cannot start is logged and replaced by none."""
    try:
        tracker = tracker_config.open(run_dir=output_dir, run_name=run_name, config=plain_config)
        mode = getattr(tracker_config, "patient_ids", "pseudonymised")
        return PatientIdGuard(tracker, mode, pseudonym_key() if mode == "pseudonymised" else b"")
    except Exception as error:  # trackers fail soft, training never depends on them
        log.warning("tracker could not start (%s); continuing without tracking", error)
        return NullTracker()


def summary(report: RunReport, output_dir: Path) -> str:
    """The console summary: data, budget, utility, leakage, and where the files are."""
    data, spend, overall = report.data, report.privacy, report.utility.overall
    cohort = data["cohort"]
    lines = [
        f"dataset      {cohort['name']}: {cohort['n_patients']} patients, "
        f"{cohort['n_records']} records (train {data['train']['n_patients']} / test "
        f"{data['test']['n_patients']} patients)",
    ]
    lines += [
        f"warning      {note.removeprefix('WARNING:').strip()}"
        for note in cohort.get("notes", [])
        if note.startswith("WARNING")
    ]
    if spend.private:
        lines.append(
            f"privacy      ε = {spend.epsilon:.3f} ({spend.accountant.upper()}; RDP "
            f"{spend.epsilon_rdp:.3f}), δ = {spend.delta:g}, σ = {spend.noise_multiplier:.3f}, "
            f"q = {spend.sample_rate:.4f}, steps = {spend.steps}, C = {spend.max_grad_norm:g}"
            + (
                f", {report.training['grad_sample_mode']}"
                if report.training.get("grad_sample_mode")
                else ""
            )
        )
    else:
        lines.append(f"privacy      none (ε = {math.inf}), steps = {spend.steps}")
    lines.append(
        f"utility      AUROC = {overall.auroc:.3f}, AUPRC = {overall.auprc:.3f}, "
        f"accuracy = {overall.accuracy:.3f}, balanced accuracy = {overall.balanced_accuracy:.3f}"
    )
    if report.audit is not None:
        lines += audit_console_lines(report)
    lines.append(f"report       {output_dir / 'report.md'}")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    app()
