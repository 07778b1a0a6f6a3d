"""Shared timing of one training setup's optimiser steps, for the DP-overhead benchmarks."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from dptrain.privacy.engine import TrainingParts, make_private
from dptrain.training.loop import RecordLoss, TensorRecords, already_batched


def ms_per_step(
    config: object,
    mode: str,
    records: TensorRecords,
    *,
    n_outputs: int,
    multilabel: bool,
    batch_size: int,
    steps: int,
    seconds: float,
) -> float:
    """Milliseconds per optimiser step of one setup (``mode="none"``: non-private).

    Two warm-up steps, then ``steps`` steps, or fewer (at least two) once ``seconds`` have
    passed, so slow setups cost bounded time.
    """
    torch.manual_seed(0)
    module = config.build(tuple(records.features.shape[1:]), n_outputs)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    criterion = RecordLoss(multilabel=multilabel, class_weights=None)
    loader = DataLoader(records, batch_size=batch_size, shuffle=True, collate_fn=already_batched)
    if mode != "none":
        parts = make_private(
            TrainingParts(module, optimizer, criterion, loader),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            grad_sample_mode=mode,
            accountant="prv",
            noise_seed=0,
        )
        module, optimizer, criterion = parts.module, parts.optimizer, parts.criterion
        loader = parts.data_loader
    module.train()

    def run(limit: int, deadline: float) -> int:
        done = 0
        while done < limit:
            for features, labels in loader:
                optimizer.zero_grad(set_to_none=True)
                criterion(module(features), labels).backward()
                optimizer.step()
                done += 1
                if done == limit or (done >= 2 and time.perf_counter() > deadline):
                    return done
        return done

    run(2, deadline=0.0)  # warm-up
    started = time.perf_counter()
    done = run(steps, deadline=started + seconds)
    return 1000.0 * (time.perf_counter() - started) / done


def interleaved_times(
    setups: dict[str, tuple[object, TensorRecords]],
    *,
    repeats: int,
    **timing: object,
) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], list[float]]]:
    """ms/step of every setup under ``none`` and each of its model's verified modes.

    All variants run once per repeat, interleaved, so machine noise hits them alike.

    Args:
        setups: label -> (model config, training records).
        repeats: Interleaved rounds.
        **timing: Passed to `ms_per_step` (n_outputs, multilabel, batch_size, steps, seconds).

    Returns:
        label -> the modes timed (``none`` first), and (label, mode) -> one time per repeat.
    """
    modes = {
        label: ("none", *type(config).grad_sample_modes) for label, (config, _) in setups.items()
    }
    times: dict[tuple[str, str], list[float]] = {
        (label, mode): [] for label in setups for mode in modes[label]
    }
    for _ in range(repeats):
        for label, (config, records) in setups.items():
            for mode in modes[label]:
                times[label, mode].append(ms_per_step(config, mode, records, **timing))
    return modes, times
