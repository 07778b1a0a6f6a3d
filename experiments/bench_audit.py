"""Audit wall time as a multiple of one training run, and how it grows with K and workers.

On the default run's data and recipe (`conf/`: ACTG 175, the MLP, ε = 8 unless --epsilon): one
training of the deployed model (including its noise calibration) is timed, then the whole audit
for each K and worker count, with the audit's stages broken down (σ calibration, training the K
models, attacks, per-patient risk and bounds). All in one process, so the ratios compare like
with like. Run it on an otherwise idle machine: two processes with two torch threads each on two
cores slow each other down many times over, not twice.

    python experiments/bench_audit.py [--models 8 16 32 64] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

from dptrain.audit.run import run_audit
from dptrain.cli.config import compose_run_config
from dptrain.data.splits import split_by_patient
from dptrain.privacy import accounting
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
    config = compose_run_config([f"privacy.epsilon={args.epsilon}"])
    cohort = config.data.load()
    recipe = {"model_factory": config.model, "privacy": config.privacy, "train": config.train}
    train = split_by_patient(cohort, test_fraction=config.split.test_fraction, seed=0).train

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
                audit=dataclasses.replace(config.audit, num_models=num_models, workers=workers),
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
