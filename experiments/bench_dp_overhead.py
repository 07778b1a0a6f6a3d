"""DP-SGD step time vs non-private step time, per Opacus grad_sample_mode, for the default model.

The default run's config (`conf/`): same data (the ACTG 175 training split, standardised), same
model (the default MLP), same optimiser, same logical batch size, one process, interleaved repeats
so machine noise hits every variant alike. A DP step
is measured on Opacus' Poisson-sampled batches (expected size = the batch size); the non-private
step on fixed-size batches.

    python experiments/bench_dp_overhead.py [--steps 300] [--repeats 5] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader

from dptrain.cli.config import compose_run_config
from dptrain.data.preprocessing import Standardizer
from dptrain.data.splits import split_by_patient
from dptrain.pipeline import RunConfig
from dptrain.privacy.engine import TrainingParts, make_private
from dptrain.training.loop import RecordLoss, TensorRecords, already_batched

MODES = ("none", "ghost", "hooks", "functorch", "ew")


def default_training_records(config: RunConfig) -> TensorRecords:
    """The default run's training split, standardised as `fit` does."""
    cohort = config.data.load()
    split = split_by_patient(cohort, test_fraction=config.split.test_fraction, seed=config.seed)
    train = split.train
    features = Standardizer.fit(train.features).transform(train.features)
    return TensorRecords(torch.from_numpy(features), torch.from_numpy(train.labels))


def steps_per_second(
    mode: str, records: TensorRecords, config: RunConfig, *, batch_size: int, steps: int
) -> float:
    """Optimiser steps per second of one training setup (after one warm-up epoch)."""
    torch.manual_seed(0)
    module = config.model.build((records.features.shape[1],), 2)
    optimizer = config.train.make_optimizer(module.parameters())
    criterion = RecordLoss(multilabel=False, class_weights=None)
    loader = DataLoader(records, batch_size=batch_size, shuffle=True, collate_fn=already_batched)
    if mode != "none":
        parts = make_private(
            TrainingParts(module, optimizer, criterion, loader),
            noise_multiplier=1.0,
            max_grad_norm=config.privacy.max_grad_norm,
            grad_sample_mode=mode,
            accountant="prv",
            noise_seed=0,
        )
        module, optimizer, criterion = parts.module, parts.optimizer, parts.criterion
        loader = parts.data_loader

    def run(limit: int) -> int:
        done = 0
        while done < limit:
            for features, labels in loader:
                optimizer.zero_grad(set_to_none=True)
                criterion(module(features), labels).backward()
                optimizer.step()
                done += 1
                if done == limit:
                    break
        return done

    run(len(loader))  # warm-up
    started = time.perf_counter()
    done = run(steps)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=compose_run_config().train.batch_size)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    config = compose_run_config()
    records = default_training_records(config)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    errors: dict[str, str] = {}
    for _ in range(args.repeats):
        for mode in MODES:
            if mode in errors:
                continue
            try:
                rate = steps_per_second(
                    mode, records, config, batch_size=args.batch_size, steps=args.steps
                )
                times[mode].append(1000.0 / rate)
            except Exception as error:  # a mode Opacus cannot apply to this model is reported
                errors[mode] = f"{type(error).__name__}: {error}"[:80]
    baseline = statistics.median(times["none"])
    print(
        f"{config.data.name}, default MLP {config.model.hidden}, {len(records)} records, "
        f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, "
        f"torch threads {args.threads}"
    )
    header = f"{'grad_sample_mode':<18}{'ms/step (median)':>18}{'min':>8}{'max':>8}"
    print(header + f"{'vs non-private':>16}")
    for mode in MODES:
        if mode in errors:
            print(f"{mode:<18}{'unsupported: ' + errors[mode]}")
            continue
        median = statistics.median(times[mode])
        print(
            f"{mode:<18}{median:>18.3f}{min(times[mode]):>8.3f}{max(times[mode]):>8.3f}"
            f"{median / baseline:>15.2f}x"
        )


if __name__ == "__main__":
    main()
