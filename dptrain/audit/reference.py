"""The audit's K models: each trained by `fit` on a random half of the patients, then queried.

Every model copies the target's recipe because it *is* the target's recipe: the same `fit`, model
factory, privacy and training configs. What differs is the patients (a membership mask) and the
seed. The privacy plan (σ, q, steps) is made once per training-set size in the parent by
`PrivacyPlan.for_training_set` (Opacus' PRV bisection costs seconds), the same call `fit` makes for
the deployed model, and the models train in parallel worker processes, one thread each: small
models gain little from intra-op threads, and the K trainings are independent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from dptrain.audit.signals import true_label_confidence
from dptrain.data.cohort import Cohort
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig, PrivacySpend
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig
from dptrain.training.device import uses_cuda
from dptrain.training.fit import fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines how a model is trained, shared by all models of an audit."""

    model_factory: ModelFactory
    privacy: PrivacyConfig
    train: TrainConfig


@dataclass(frozen=True)
class ReferenceModelOutput:
    """What the audit keeps of one trained model: its signals, never the model itself.

    Attributes:
        index: Model index k.
        signals: ``(n_records,)`` float64 logit-scaled confidence φ of every pool record.
        privacy: The model's privacy guarantee.
        train_seconds: Wall time of its training loop.
    """

    index: int
    signals: np.ndarray
    privacy: PrivacySpend
    train_seconds: float


def train_reference_models(
    *,
    pool: Cohort,
    membership: np.ndarray,
    recipe: Recipe,
    seed: int,
    workers: int = 0,
    progress: bool = False,
) -> list[ReferenceModelOutput]:
    """Trains one model per row of ``membership`` and returns each model's signals on the pool.

    Args:
        pool: The audit pool (all records of all audited patients).
        membership: ``(K, n_patients)`` bool, the patients each model trains on.
        recipe: The target's recipe.
        seed: Base seed; model k uses ``seed + 1 + k``, none the deployed model's ``seed``.
        workers: Worker processes; 0 means one per CPU core, 1 trains in this process.
        progress: Show a progress bar over models.

    Returns:
        The K outputs, in model order.
    """
    plans = _plan_per_size(pool, membership, recipe)
    tasks = [
        _Task(
            index=k,
            patients=np.flatnonzero(membership[k]),
            seed=seed + 1 + k,
            plan=plans[_training_size(pool, membership[k])],
        )
        for k in range(len(membership))
    ]
    workers = workers or _available_cores()
    workers = min(workers, len(tasks))
    bar = tqdm(total=len(tasks), desc="audit models", unit="model", disable=not progress)
    outputs: list[ReferenceModelOutput] = []
    try:
        for output in _run(tasks, pool=pool, recipe=recipe, workers=workers):
            outputs.append(output)
            bar.update(1)
    finally:
        bar.close()
    return sorted(outputs, key=lambda output: output.index)


def _available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class _Task:
    index: int
    patients: np.ndarray
    seed: int
    plan: PrivacyPlan


def _training_size(pool: Cohort, patient_mask: np.ndarray) -> tuple[int, int]:
    """(records, largest records per patient) of one model's training set."""
    per_patient = pool.records_per_patient[patient_mask]
    return int(per_patient.sum()), int(per_patient.max(initial=0))


def _plan_per_size(
    pool: Cohort, membership: np.ndarray, recipe: Recipe
) -> dict[tuple[int, int], PrivacyPlan]:
    """The privacy plan of each distinct training-set size (usually one or two), made once."""
    sizes = {_training_size(pool, mask) for mask in membership}
    return {
        (n_records, largest): PrivacyPlan.for_training_set(
            recipe.privacy,
            n_units=n_records,
            batch_size=recipe.train.batch_size,
            epochs=recipe.train.epochs,
            max_records_per_patient=largest,
        )
        for n_records, largest in sizes
    }


def _run(
    tasks: list[_Task], *, pool: Cohort, recipe: Recipe, workers: int
) -> Iterator[ReferenceModelOutput]:
    if workers == 1:
        for task in tasks:
            yield _train_one(task, pool, recipe)
        return
    # CUDA cannot be re-initialised in a forked child: with a GPU the workers start fresh.
    start_method = "spawn" if uses_cuda(recipe.train.device) else _START_METHOD
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(pool, recipe),
    ) as executor:
        yield from executor.map(_train_in_worker, tasks)


# fork starts a worker in milliseconds with the pool already in memory, and torch resets its
# intra-op thread pool in a forked child; where fork is unavailable (Windows) or not the platform
# default (macOS, where it is unsafe with system frameworks), spawn re-imports (~seconds a worker).
_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
_worker_state: dict[str, object] = {}


def _init_worker(pool: Cohort, recipe: Recipe) -> None:
    """Receives the pool once per worker instead of once per model."""
    torch.set_num_threads(1)
    _worker_state["pool"] = pool
    _worker_state["recipe"] = recipe


def _train_in_worker(task: _Task) -> ReferenceModelOutput:
    return _train_one(task, _worker_state["pool"], _worker_state["recipe"])


def _train_one(task: _Task, pool: Cohort, recipe: Recipe) -> ReferenceModelOutput:
    model = fit(
        cohort=pool.subset_by_patients(task.patients),
        model_factory=recipe.model_factory,
        privacy=recipe.privacy,
        train=recipe.train,
        seed=task.seed,
        plan=task.plan,
    )
    signals = true_label_confidence(model.predict_logits(pool.features), pool.labels)
    return ReferenceModelOutput(
        index=task.index,
        signals=signals,
        privacy=model.privacy,
        train_seconds=model.wall_seconds,
    )
