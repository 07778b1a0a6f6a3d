"""Audit wall time as a multiple of one training run, and how it grows with K and workers.

On ACTG 175 with the default recipe (ε = 8): one training of the deployed model (including its
noise calibration) is timed, then the whole audit for each K and worker count, with the audit's
stages broken down (σ calibration, training the K models, attacks, per-patient risk and bounds).
All in one process, so the ratios compare like with like.

    python experiments/bench_audit.py [--models 8 16 32 64] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

from dptrain.audit.config import AuditConfig
from dptrain.audit.run import run_audit
from dptrain.data import builtin_path
from dptrain.data.splits import split_by_patient
from dptrain.data.tables import TableDataConfig
from dptrain.models import MLPConfig
from dptrain.privacy import accounting
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit


def clear_accounting_caches() -> None:
    """Each measurement pays for its own calibration, as a fresh run would."""
    for cached in (
        accounting.calibrate_noise,
        accounting.epsilon_spent,
        accounting.rdp_epsilon_curve,
    ):
        cached.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epsilon", type=float, default=8.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cohort = TableDataConfig(
        path=builtin_path("ACTG175.csv"),
        id_column="pidnum",
        label_columns=["cens"],
        exclude_columns=["Unnamed: 0", "days", "cd496", "r", "offtrt"],
        categorical_columns=["strat", "arms"],
    ).load()
    recipe = {
        "model_factory": MLPConfig(),
        "privacy": PrivacyConfig(epsilon=args.epsilon),
        "train": TrainConfig(),
    }
    train = split_by_patient(cohort, test_fraction=0.2, seed=0).train

    fit(cohort=train.subset_by_patients(range(100)), seed=0, **recipe)  # warm-up: lazy imports
    clear_accounting_caches()
    started = time.perf_counter()
    model = fit(cohort=train, seed=0, **recipe)
    one_training = time.perf_counter() - started
    print(
        f"one training: {one_training:.2f} s ({model.wall_seconds:.2f} s loop, rest is σ "
        f"calibration and setup), {train.n_records} records, {model.privacy.steps} steps"
    )
    print(
        f"{'K':>4}{'workers':>9}{'audit s':>9}{'x training':>12}{'calibrate+train s':>19}"
        f"{'per model s':>13}{'attacks s':>11}{'risk+bounds s':>15}"
    )
    for workers in args.workers:
        for num_models in args.models:
            clear_accounting_caches()
            started = time.perf_counter()
            audit = run_audit(
                cohort=cohort,
                seed=0,
                audit=AuditConfig(num_models=num_models, workers=workers),
                **recipe,
            )
            total = time.perf_counter() - started
            timings = audit.timings
            print(
                f"{num_models:>4}{workers:>9}{total:>9.1f}{total / one_training:>11.1f}x"
                f"{timings['train_models_seconds']:>19.1f}"
                f"{timings['model_train_loop_seconds_mean']:>13.2f}"
                f"{timings['attacks_seconds']:>11.2f}{timings['risk_and_bounds_seconds']:>15.2f}"
            )


if __name__ == "__main__":
    main()
