"""How many intra-op threads a training run gets: one for tiny models, the cores for big ones.

torch splits each operation over its intra-op threads. For a tiny model (ACTG 175's MLP: a
forward pass of a few thousand FLOPs per record) every operation is too small to split, and the
threads only synchronise: on a busy 2-core machine the deployed ACTG model's loop took 36 s with
torch's default threads and 0.8 s with one. Big models (image CNNs) split usefully. The choice is
made from the model's forward FLOPs per step (per record × batch size), measured once on one
record with torch's FLOP counter; `train.threads` overrides it. The audit's models always train
with one thread each, the parallelism being across models.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dptrain.data.cohort import Cohort
from dptrain.data.records import chunks
from dptrain.models import ModelFactory

# Forward FLOPs per step below which one thread is used. Measured on this project's 2-core machine
# while busy (load ~6), training-loop seconds with 1 vs 2 intra-op threads:
#   ACTG 175 MLP [64, 64]      3e6 FLOPs/step   0.08 s vs 1.80 s  (5 epochs, DP ε = 8)
#   ACTG 175 MLP [256, 256]    4e7              0.24 s vs 0.89 s
#   ACTG 175 MLP [1024, 1024]  6e8              1.91 s vs 7.18 s
#   BreastMNIST-size GroupNorm CNN     5e8      0.45 s vs 1.41 s  (1 epoch, 400 images)
#   BreastMNIST-size GroupNorm ResNet  3e10     15.9 s vs 18.8 s
# Threads lose 3–20× on the small models and ~15 % on the ResNet there; on an idle many-core
# machine only the big convolutions have operations large enough to split. Below 1e9 one thread
# is never the wrong choice by much; above it the cores are used.
SINGLE_THREAD_FLOPS_PER_STEP = 1e9


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op threads of a training run and why.

    Attributes:
        threads: Intra-op threads to use.
        reason: One sentence for the run summary.
        forward_flops_per_step: Forward FLOPs of one batch (NaN when ``train.threads`` was set).
    """

    threads: int
    reason: str
    forward_flops_per_step: float


def forward_flops_per_record(model_factory: ModelFactory, cohort: Cohort) -> float:
    """Forward-pass FLOPs of the model on one of the cohort's records.

    The model is built for the record shape the training loop feeds it (after the cohort's
    preprocessing), with its own throwaway initialisation; the global RNG is left untouched.
    """
    sample = np.ascontiguousarray(next(iter(chunks(cohort.features, 64))))
    preprocessing = cohort.preprocessing.fit(sample)  # only the shape it gives matters
    inputs = preprocessing.transform(torch.from_numpy(sample[:1]))
    with torch.random.fork_rng(devices=[]):
        module = model_factory.build(tuple(inputs.shape[1:]), cohort.n_classes)
    module.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(inputs.float())
    return float(counter.get_total_flops())


def choose_threads(
    *,
    requested: int,
    model_factory: ModelFactory,
    cohort: Cohort,
    batch_size: int,
    available: int,
) -> ThreadChoice:
    """One thread below `SINGLE_THREAD_FLOPS_PER_STEP` forward FLOPs a step, else the cores.

    Args:
        requested: ``train.threads``; 0 chooses, anything else is used as is.
        model_factory: The model's config.
        cohort: The training cohort (its record shape and classes decide the model's size).
        batch_size: Logical batch size (records per step).
        available: Cores this process may use.

    Returns:
        The choice and its reason.

    Example:
        >>> from dptrain.models import MLPConfig
        >>> cohort = Cohort.from_records(name="toy", features=np.zeros((4, 10), np.float32),
        ...     labels=[0, 1, 0, 1], patient_ids=[0, 1, 2, 3])
        >>> choose_threads(requested=0, model_factory=MLPConfig(hidden=[64, 64]), cohort=cohort,
        ...     batch_size=256, available=8).threads
        1
    """
    if requested:
        return ThreadChoice(requested, f"train.threads = {requested}", float("nan"))
    flops = forward_flops_per_record(model_factory, cohort) * batch_size
    if flops < SINGLE_THREAD_FLOPS_PER_STEP:
        reason = (
            f"1 intra-op thread: {flops:.2g} forward FLOPs a step is below "
            f"{SINGLE_THREAD_FLOPS_PER_STEP:.0e}, where threads cost more than they save"
        )
        return ThreadChoice(1, reason, flops)
    reason = (
        f"{available} intra-op threads (the available cores): {flops:.2g} forward FLOPs a step "
        f"is above {SINGLE_THREAD_FLOPS_PER_STEP:.0e}"
    )
    return ThreadChoice(available, reason, flops)


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Runs the block with ``threads`` intra-op threads and restores the previous number.

    Example:
        >>> before = torch.get_num_threads()
        >>> with intra_op_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
