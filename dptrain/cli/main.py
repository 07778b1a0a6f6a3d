"""The ``dptrain`` command: a Hydra app that trains, evaluates, audits and reports one run.

Errors a user can fix (bad config values, bad data, and Hydra's own: a typo'd key, a wrong type, an
unknown group option, an unparsable override, a run directory that cannot be made) print as one
line and exit with status 2; ``hydra.verbose=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback
instead. ``dptrain --check-data <overrides>`` loads and describes the data without training.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dptrain.cli.callbacks import SWEEP_OUTCOME
from dptrain.cli.config import CONFIG_DIR, build_run_config, register_schemas
from dptrain.cli.errors import hydra_error_message
from dptrain.cli.rundir import claim_run_directory
from dptrain.errors import DptrainError
from dptrain.pipeline import run
from dptrain.reporting.audit_markdown import audit_console_lines
from dptrain.reporting.dp_audit_markdown import dp_audit_console_lines
from dptrain.reporting.files import RESULTS_FILE, read_results
from dptrain.reporting.markdown import utility_console_lines
from dptrain.reporting.results import RunReport
from dptrain.tracking.base import FailSoftTracker, NullTracker, sweep_group
from dptrain.tracking.pseudonyms import PatientIdGuard, pseudonym_key

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
# A full disk, a quota, a read-only filesystem: a write the user can fix (audit files, ...).
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
CHECK_DATA_FLAG = "--check-data"
log = logging.getLogger("dptrain")
# What `main` tells the app about this invocation (a Hydra task function takes only the config).
_invocation = {"check_data": False, "app_started": False, "failed_jobs": 0}

register_schemas()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job of the app (one point of a multirun sweep); returns test AUROC for sweepers."""
    _invocation["app_started"] = True
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    if _invocation["check_data"]:
        return _check_data(cfg, verbose=bool(hydra_config.verbose))
    if hydra_config.mode == RunMode.MULTIRUN:
        finished = _finished_run(output_dir, OmegaConf.to_container(cfg, resolve=True))
        if finished is not None:
            print(f"finished     {output_dir} (same config: kept, not run again)")
            return finished
    try:
        with claim_run_directory(output_dir):
            run_config, tracker_config = build_run_config(cfg)
            tracker_config = _with_sweep_group(tracker_config, hydra_config)
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
        if hydra_config.mode == RunMode.MULTIRUN:
            # One bad point of a sweep fails alone: the other jobs run, the sweep report lists
            # this one under "left out" (it has no results.json), and the command exits 2.
            print(f"dptrain: error: job {hydra_config.job.num}: {error}", file=sys.stderr)
            _invocation["failed_jobs"] += 1
            return math.nan
        print(f"dptrain: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:
        if hydra_config.verbose or error.errno not in WRITE_ERRORS:
            raise
        print(
            f"dptrain: error: cannot write {error.filename or output_dir} ({error.strerror}); "
            "the run wrote no results.json: free disk space or point hydra.run.dir at another "
            "folder, then run again",
            file=sys.stderr,
        )
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
    for note in tracker.notes():  # e.g. the `wandb sync <dir>` that uploads an offline run
        print(f"tracker      {note}")
    return report.utility.overall.auroc


def _finished_run(output_dir: Path, plain_config: dict) -> float | None:
    """The test AUROC of a complete run already in ``output_dir`` with this config, else None.

    Re-launching a sweep into the same ``hydra.sweep.dir`` skips the jobs that finished; a job
    whose config changed, or that left no complete ``results.json``, runs again.
    """
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = read_results(path)
    except (ValueError, OSError):
        return None
    if results.get("config") != json.loads(json.dumps(plain_config)):
        return None
    auroc = results.get("utility", {}).get("overall", {}).get("auroc")
    return float(auroc) if isinstance(auroc, int | float) else math.nan


def _with_sweep_group(tracker_config, hydra_config):
    """The tracker config with ``group`` = the sweep directory in a multirun, unless set."""
    if hydra_config.mode != RunMode.MULTIRUN or getattr(tracker_config, "group", "") is not None:
        return tracker_config
    return dataclasses.replace(tracker_config, group=sweep_group(Path(hydra_config.sweep.dir)))


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
    data, spend = report.data, report.privacy
    cohort = data["cohort"]
    lines = [
        f"dataset      {cohort['name']}: {cohort['n_patients']} patients, "
        f"{cohort['n_records']} records (train {data['train']['n_patients']} / "
        + (f"validation {data['validation']['n_patients']} / " if "validation" in data else "")
        + f"test {data['test']['n_patients']} patients)",
    ]
    training = report.training
    if training.get("early_stopping"):
        lines.append(
            f"training     kept epoch {training['kept_epoch']} of {training['epochs_run']} "
            f"(best validation {training['validation_metric']}; ε covers all epochs run)"
        )
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
    lines += utility_console_lines(report.utility)
    if report.audit is not None:
        lines += audit_console_lines(report)
    lines += dp_audit_console_lines(report)
    lines.append(f"report       {output_dir / 'report.md'}")
    return "\n".join(lines)


def _check_data(cfg: DictConfig, *, verbose: bool) -> float:
    """``--check-data``: prints what the run would use, without training; exit 0."""
    from dptrain.cli.check import check_data_lines  # the check's imports stay out of a run

    try:
        run_config, _ = build_run_config(cfg)
        lines = check_data_lines(run_config)
    except DptrainError as error:
        if verbose:
            raise
        print(f"dptrain: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    print("\n".join(lines))
    return math.nan


def main() -> None:
    """Console-script entry point: every error a user can fix is one line and exit status 2.

    Hydra reports its own errors (composition, override syntax, the run directory) over several
    lines with exit status 1; here Hydra re-raises them instead, and they are printed as one line
    naming the key, the option or the file, with the fix.
    """
    _invocation.update(check_data=CHECK_DATA_FLAG in sys.argv[1:], app_started=False, failed_jobs=0)
    SWEEP_OUTCOME["incomplete_runs"] = 0
    silence_known_warnings()
    scratch = None
    if _invocation["check_data"]:
        arguments, scratch = _check_data_arguments(sys.argv[1:])
        sys.argv = [sys.argv[0], *arguments]
    try:
        if os.environ.get("HYDRA_FULL_ERROR") or _verbose_requested(sys.argv[1:]):
            app()
        else:
            _app_with_one_line_errors()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    failed = max(_invocation["failed_jobs"], SWEEP_OUTCOME["incomplete_runs"])
    if failed:
        print(
            f"dptrain: error: {failed} job(s) of the sweep failed (their one-line errors are "
            "above, or in the launcher's job logs); the others finished",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)


def silence_known_warnings() -> None:
    """Hides warnings that say nothing to a user, each matched by message and module.

    Opacus's PRV accountant evaluates ``log(1 - q)``, which is ``log(0)`` when a small table's
    whole training set is one expected batch (q = 1); NumPy warns "divide by zero encountered in
    log" many times per run, and the ε it returns is right.
    """
    warnings.filterwarnings(
        "ignore",
        message="divide by zero encountered in log",
        category=RuntimeWarning,
        module=r"opacus\.",
    )


def _app_with_one_line_errors() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them
    try:
        app()
    except Exception as error:
        message = hydra_error_message(
            error, arguments=sys.argv[1:], app_started=_invocation["app_started"]
        )
        if message is None:
            raise  # a bug, not a user error: keep the traceback
        print(f"dptrain: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("dptrain: interrupted before the run started; nothing was written", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def _check_data_arguments(arguments: list[str]) -> tuple[list[str], str | None]:
    """The arguments without ``--check-data``, and a scratch run directory unless one was given.

    Hydra makes its run directory before the app runs; a check should leave nothing behind.
    """
    arguments = [argument for argument in arguments if argument != CHECK_DATA_FLAG]
    arguments.append("hydra.output_subdir=null")  # no .hydra/ copy of the config
    if any(argument.startswith("hydra.run.dir=") for argument in arguments):
        return arguments, None
    scratch = tempfile.mkdtemp(prefix="dptrain-check-")
    return [*arguments, f"hydra.run.dir={scratch}"], scratch


def _verbose_requested(arguments: list[str]) -> bool:
    """Whether the command line sets ``hydra.verbose`` (then errors keep their tracebacks)."""
    return any(
        argument.startswith("hydra.verbose=")
        and argument.split("=", 1)[1].strip().lower() not in ("false", "0", "null", "[]", "")
        for argument in arguments
    )
