"""One dptrain run, usable from Python without Hydra: data, split, fit, evaluate, audit, report.

The CLI composes a `RunConfig` from Hydra and calls `run`; a notebook can build the same
`RunConfig` by hand.

With ``train.early_stopping`` the training patients are cut once more, by patient and stratified
by label (`dptrain.training.selection.validation_split`): the validation patients never enter the
DP training data (the privacy plan's N, q and δ are for the patients that remain), choose only the
epoch kept, and are not covered by ε. The audit's models train for the kept number of epochs.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from dptrain.audit.config import AuditConfig
from dptrain.audit.dp_audits import DPAuditInputs, DPAuditRow, run_dp_audits
from dptrain.audit.executors import available_cores
from dptrain.audit.knowledge import run_knowledge_levels
from dptrain.audit.run import run_audit
from dptrain.data.cohort import Cohort
from dptrain.data.splits import CohortSplit, SplitConfig, official_split, split_by_patient
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.reporting.results import RunReport, to_plain
from dptrain.reporting.writer import write_run
from dptrain.tracking.base import NullTracker, Tracker
from dptrain.training.config import TrainConfig
from dptrain.training.evaluate import check_test_split, evaluate
from dptrain.training.fit import EpochLog, TrainedModel, fit
from dptrain.training.frontend import apply_frontend
from dptrain.training.leakage import label_leakage_notes
from dptrain.training.resume import TRAINING_STATE_FILE
from dptrain.training.selection import validation_split, validation_statement
from dptrain.training.threads import choose_threads, intra_op_threads

log = logging.getLogger(__name__)
VERSIONED_PACKAGES = ("torch", "opacus", "numpy", "scikit-learn", "hydra-core", "wandb", "dptrain")


class DataSource(Protocol):
    """A data config that can load its cohort."""

    def load(self) -> Cohort:
        """Reads the data and returns the cohort."""


@dataclass
class RunConfig:
    """Everything one run needs.

    Attributes:
        data: Where the data is and what its columns mean (e.g. `TableDataConfig`).
        model: The model builder (e.g. `MLPConfig`).
        privacy: DP-SGD settings, or ``mode=none`` for the baseline.
        train: Optimisation recipe.
        audit: The membership-inference audit (``mode=none`` to skip).
        split: How test patients are held out.
        seed: Seed of the split, the model and the audit.
    """

    data: DataSource
    model: ModelFactory
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0


def run(
    config: RunConfig,
    *,
    output_dir: Path,
    tracker: Tracker | None = None,
    plain_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunReport:
    """Trains, evaluates, audits and writes the run's files into ``output_dir``.

    ``results.json`` is written last, so a run that fails at any stage leaves none behind.

    Args:
        config: The run configuration.
        output_dir: Run directory (created if needed).
        tracker: Experiment tracker (fail-soft wrapping is the caller's choice).
        plain_config: The configuration as plain values for the results file; derived from
            ``config`` when omitted.
        progress: Show progress bars.

    Returns:
        The run report.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tracker = tracker or NullTracker()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    cohort = config.data.load()
    timings["load_seconds"] = time.perf_counter() - started
    stage = time.perf_counter()
    loaded = cohort.features
    cohort, frontend = apply_frontend(cohort, config.model)
    if frontend is not None:
        timings["frontend_seconds"] = time.perf_counter() - stage
    # Before training, so a bad audit.knowledge level fails in seconds; imputed images and
    # signals go through the front end here, once, as the records did.
    knowledge = run_knowledge_levels(
        levels=config.audit.knowledge if config.audit.leave_many_out else [],
        feature_groups=config.audit.feature_groups,
        cohort=cohort,
        raw_records=loaded,
        model_factory=config.model,
        data_config=config.data,
    )
    del loaded
    split = _split(cohort, config)
    check_test_split(split.test)  # before training: a run whose utility cannot be computed
    train_cohort, validation = split.train, None
    if config.train.early_stopping:
        held_out = validation_split(
            split.train, fraction=config.train.validation_fraction, seed=config.seed
        )
        train_cohort, validation = held_out.train, held_out.validation
    privacy = _privacy_unit(config.privacy, cohort)
    log.info(
        "%s: %d patients, %d records; train %d patients%s, test %d patients",
        cohort.name,
        cohort.n_patients,
        cohort.n_records,
        train_cohort.n_patients,
        f", validation {validation.n_patients} patients" if validation is not None else "",
        split.test.n_patients,
    )

    def log_epoch(entry: EpochLog) -> None:
        # "epsilon" is the configured accountant's (it ends at the headline ε); RDP is labelled.
        metrics = {"loss": entry.loss, "epsilon": entry.epsilon, "epsilon_rdp": entry.epsilon_rdp}
        if validation is not None:
            metrics[f"validation_{config.train.validation_metric}"] = entry.validation
        tracker.log_epoch(metrics, step=entry.epoch)

    stage = time.perf_counter()
    threads = choose_threads(
        requested=config.train.threads,
        model_factory=config.model,
        cohort=train_cohort,
        batch_size=config.train.batch_size,
        available=available_cores(),
    )
    log.info("training with %s", threads.reason)
    with intra_op_threads(threads.threads):
        model = fit(
            cohort=train_cohort,
            model_factory=config.model,
            privacy=privacy,
            train=config.train,
            seed=config.seed,
            progress=progress,
            on_epoch=log_epoch,
            state_path=output_dir / TRAINING_STATE_FILE,
            validation=validation,
        )
    timings["train_seconds"] = time.perf_counter() - stage
    timings["train_loop_seconds"] = model.wall_seconds

    stage = time.perf_counter()
    utility = evaluate(split.test, model.predict_proba(split.test.features))
    leakage = label_leakage_notes(train_cohort, utility)
    for note in leakage:
        log.warning(note.removeprefix("WARNING: "))
    utility = dataclasses.replace(utility, notes=(*utility.notes, *leakage))
    timings["evaluate_seconds"] = time.perf_counter() - stage

    dp_audits: tuple[DPAuditRow, ...] = ()
    if config.audit.dp_audit_names:
        stage = time.perf_counter()
        # They audit the DP mechanism of all planned epochs (the ε reported), so they run every
        # epoch on the DP training patients and keep the last: no epoch selection.
        dp_audits = run_dp_audits(
            DPAuditInputs(
                cohort=train_cohort,
                model_factory=config.model,
                privacy=privacy,
                train=dataclasses.replace(config.train, early_stopping=False),
                audit=config.audit,
                seed=config.seed,
            )
        )
        timings["dp_audit_seconds"] = time.perf_counter() - stage

    audit = None
    if config.audit.leave_many_out:
        stage = time.perf_counter()
        audit = run_audit(
            cohort=cohort,
            model_factory=config.model,
            privacy=privacy,
            train=config.train,
            audit=config.audit,
            seed=config.seed,
            progress=progress,
            output_dir=output_dir,
            kept_epochs=model.kept_epoch if config.train.early_stopping else None,
            knowledge=knowledge,
        )
        timings["audit_seconds"] = time.perf_counter() - stage
    timings["total_seconds"] = time.perf_counter() - started

    report = RunReport(
        config=plain_config if plain_config is not None else to_plain(config),
        data={
            "cohort": cohort.summary(),
            "train": train_cohort.summary(),
            **({"validation": validation.summary()} if validation is not None else {}),
            "test": split.test.summary(),
        },
        privacy=model.privacy,
        utility=utility,
        history=model.history,
        audit=audit,
        dp_audits=dp_audits,
        timings=timings,
        versions=library_versions(),
        training={
            "grad_sample_mode": model.grad_sample_mode,
            "device": model.device,
            "frontend": frontend,
            "model_parameters": sum(p.numel() for p in model.module.parameters()),
            "intra_op_threads": threads.threads,
            "intra_op_threads_reason": threads.reason,
            **_epoch_facts(model, config.train),
        },
    )
    write_run(report, model=model, output_dir=output_dir, tracker=tracker)
    # The run is complete (results.json written): nothing is left to resume.
    (output_dir / TRAINING_STATE_FILE).unlink(missing_ok=True)
    return report


def _epoch_facts(model: TrainedModel, train: TrainConfig) -> dict[str, Any]:
    """Which baseline ran (fixed epochs or early stopping) and what ε covers, for the report."""
    facts: dict[str, Any] = {
        "early_stopping": train.early_stopping,
        "epochs_run": model.epochs_run,
        "kept_epoch": model.kept_epoch,
    }
    if not train.early_stopping:
        return facts
    return facts | {
        "validation_fraction": train.validation_fraction,
        "validation_metric": model.validation_metric,
        "validation_score": model.validation_score,
        "validation_patients": model.validation_patients,
        "validation_note": validation_statement(model.validation_patients),
        "epsilon_covers": (
            f"all {model.epochs_run} epochs run: the kept epoch was chosen after all of them"
        ),
        "audit_models_epochs": model.kept_epoch,
    }


def _privacy_unit(privacy: PrivacyConfig, cohort: Cohort) -> PrivacyConfig:
    """The privacy config with its unit resolved on the whole cohort, and the choice logged.

    Resolving before the split gives the target and every audit model the same unit.
    """
    largest = int(cohort.records_per_patient.max())
    resolved = privacy.for_cohort(largest)
    if largest == 1 and privacy.private:
        log.info(
            "privacy.unit=%s: every patient has one record, so ε per record is ε per patient "
            "(record- and patient-level DP-SGD have the same σ, q and steps here)%s",
            privacy.unit,
            "; record-level chosen" if privacy.unit == "auto" else "",
        )
    elif privacy.unit == "auto" and privacy.private:
        log.info(
            "privacy.unit=auto: patients have up to %d records, so ε protects a whole patient "
            "(patient-level DP-SGD; privacy.unit=record for ε per record)",
            largest,
        )
    return resolved


def _split(cohort: Cohort, config: RunConfig) -> CohortSplit:
    """The data set's official split when the data config asks for it, else a patient split."""
    if getattr(config.data, "split", "patient") == "official":
        return official_split(cohort)
    return split_by_patient(cohort, test_fraction=config.split.test_fraction, seed=config.seed)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    versions["dptrain_git"] = _git_commit()
    return versions


def _git_commit() -> str:
    """The code's git commit (``+dirty`` with uncommitted changes), or ``unknown`` outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
