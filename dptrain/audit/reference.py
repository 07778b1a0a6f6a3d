"""The audit's K models: each trained by `fit` on a random half of the patients, then queried.

Every model copies the target's recipe because it *is* the target's recipe: the same `fit`, model
factory, privacy and training configs. What differs is the patients (a membership mask) and the
seed, which is fixed by the model's index, so a model's signals do not depend on where it trains.
The privacy plan (σ, q, steps) is made once per training-set size in the parent by
`PrivacyPlan.for_training_set` (Opacus' PRV bisection costs seconds), the same call `fit` makes for
the deployed model. The models train on an executor (`dptrain.audit.executors`: a local process
pool, Ray or submitit) with one intra-op thread each: small models gain little from intra-op
threads, and the K trainings are independent. With a store (`dptrain.audit.store`) every model is
saved as it finishes, and models saved earlier under the same fingerprint are loaded, not retrained.

Early stopping (``train.early_stopping``): the target's validation patients choose its kept epoch
E*; the audit's models then train for exactly E* epochs on their whole halves, with the σ planned
for all of ``train.epochs`` (`dptrain.training.selection.first_epochs`), and no validation split of
their own. The target's weights at E* are those of a run of E* epochs with that σ, so this is the
target's recipe with E* as a fixed hyperparameter; a model holding validation patients out of its
half would train on patients its membership row calls IN. Each model's ε is accounted for the
E* epochs it trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from dptrain.audit.attribute import AttributeProbe, candidate_signals, probes_key
from dptrain.audit.executors import DEFAULT_START_METHOD, LocalExecutor, ModelExecutor
from dptrain.audit.knowledge import KnowledgeLevel, knowledge_key, knowledge_signals
from dptrain.audit.signals import true_label_confidence
from dptrain.audit.store import ModelStore, ReferenceModelOutput, model_fingerprint
from dptrain.data.cohort import Cohort
from dptrain.data.records import Records
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig
from dptrain.training.device import uses_cuda
from dptrain.training.fit import fit
from dptrain.training.selection import first_epochs
from dptrain.training.threads import intra_op_threads

__all__ = ["Recipe", "ReferenceModelOutput", "recipe_fingerprint", "train_reference_models"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines how a model is trained, shared by all models of an audit.

    Attributes:
        model_factory: The target's model builder.
        privacy: The target's privacy config.
        train: The target's training recipe.
        kept_epochs: With ``train.early_stopping``, the epochs the target kept (E*): every model
            trains exactly that many, with the σ planned for ``train.epochs``; None otherwise.
    """

    model_factory: ModelFactory
    privacy: PrivacyConfig
    train: TrainConfig
    kept_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.train.early_stopping and self.kept_epochs is None:
            raise ValueError("an early-stopped recipe needs the target's kept epochs")
        if self.kept_epochs is not None and not 1 <= self.kept_epochs <= self.train.epochs:
            raise ValueError(f"kept_epochs={self.kept_epochs} is outside 1..{self.train.epochs}")

    @property
    def model_train(self) -> TrainConfig:
        """What each audit model runs: the recipe, for the kept epochs without selection."""
        if self.kept_epochs is None:
            return self.train
        return dataclasses.replace(self.train, epochs=self.kept_epochs, early_stopping=False)


def model_seed(seed: int, index: int) -> int:
    """Model ``index``'s seed: ``seed + 1 + index``, never the deployed model's ``seed``."""
    return seed + 1 + index


def train_reference_models(
    *,
    pool: Cohort,
    membership: np.ndarray,
    recipe: Recipe,
    seed: int,
    workers: int = 0,
    progress: bool = False,
    indices: Sequence[int] | None = None,
    executor: ModelExecutor | None = None,
    store: ModelStore | None = None,
    probes: Sequence[AttributeProbe] = (),
    knowledge: Sequence[KnowledgeLevel] = (),
) -> list[ReferenceModelOutput]:
    """Trains one model per requested row of ``membership`` and returns each model's signals.

    Args:
        pool: The audit pool (all records of all audited patients).
        membership: ``(K, n_patients)`` bool, the patients each model trains on.
        recipe: The target's recipe.
        seed: Base seed; model k uses `model_seed` (``seed + 1 + k``).
        workers: Worker processes of the default local executor; 0 means one per CPU core, 1
            trains in this process.
        progress: Show a progress bar over models.
        indices: The models (rows of ``membership``) wanted; None means all K.
        executor: Where the models train, already entered; None uses a local pool of
            ``workers`` processes.
        store: Saved models: those whose fingerprint matches are loaded instead of trained, and
            every model trained is saved as it finishes. None keeps nothing.
        probes: Sensitive attributes (`dptrain.audit.attribute`): each model also scores the pool
            with each attribute set to each of its values, one forward pass per value; empty (the
            default) adds nothing to a model's cost or output.
        knowledge: Partial-knowledge attackers (`dptrain.audit.knowledge`): each model also
            scores the pool as each level imputes it (table columns, or image and signal
            regions), one forward pass per level other than ``all``; empty (the default) adds
            nothing.

    Returns:
        The requested models' outputs, in model order (``reused`` marks the loaded ones).
    """
    # unit=auto is resolved once on the whole pool, so every model has the same unit.
    privacy = recipe.privacy.for_cohort(int(pool.records_per_patient.max()))
    recipe = dataclasses.replace(recipe, privacy=privacy)
    indices = range(len(membership)) if indices is None else indices
    outputs: dict[int, ReferenceModelOutput] = {}
    fingerprints: dict[int, str] = {}
    if store is not None:
        recipe_key = recipe_fingerprint(recipe, pool)
        for k in indices:
            fingerprints[k] = model_fingerprint(
                recipe_key, seed=model_seed(seed, k), membership_row=membership[k]
            )
            saved = store.load(
                k,
                fingerprint=fingerprints[k],
                attribute_key=probes_key(probes),
                knowledge_key=knowledge_key(knowledge),
            )
            if saved is not None:
                outputs[k] = saved
        if outputs:
            log.info("audit: %d models loaded from %s", len(outputs), store.directory)
    missing = [k for k in indices if k not in outputs]
    plans = _plan_per_size(pool, membership[missing], recipe)
    tasks = [
        _Task(
            index=k,
            patients=np.flatnonzero(membership[k]),
            seed=model_seed(seed, k),
            plan=plans[_training_size(pool, membership[k], recipe.privacy.unit)],
            probes=tuple(probes),
        )
        for k in missing
    ]
    if executor is None:
        # CUDA cannot be re-initialised in a forked child: with a GPU the workers start fresh.
        start_method = "spawn" if uses_cuda(recipe.train.device) else DEFAULT_START_METHOD
        executor = LocalExecutor(workers=workers, start_method=start_method)
    bar = tqdm(total=len(tasks), desc="audit models", unit="model", disable=not progress)
    try:
        # The levels ride with the pool: with a front end they hold the imputed pools' inputs.
        shared = (pool, recipe, tuple(knowledge))
        for _, output in executor.map_unordered(_train_one, tasks, shared=shared):
            if store is not None:
                store.save(
                    output,
                    seed=model_seed(seed, output.index),
                    fingerprint=fingerprints[output.index],
                )
            outputs[output.index] = output
            bar.update(1)
    finally:
        bar.close()
    return [outputs[k] for k in sorted(outputs)]


def recipe_fingerprint(recipe: Recipe, pool: Cohort) -> str:
    """Hash of what all the audit's models share: the recipe's configs and the pool's content.

    The data enter by content (records, labels, patients, preprocessing), not by their config: a
    config names files whose contents may change, and what a model learns from is the content.
    ``train.threads`` is left out: the audit's models always train with one thread. At record
    level ``privacy.unit`` and ``privacy.max_records_per_patient`` (which acts only at patient
    level) are left out too, so record-level fingerprints, and the saved models they find, are
    those from before the privacy unit existed; so are the early-stopping fields when it is off.
    With early stopping the target's kept epochs enter: they decide how long the models train.
    """
    train = dataclasses.asdict(recipe.train)
    train.pop("threads", None)
    privacy = _plain(recipe.privacy)
    if isinstance(privacy, dict) and privacy.get("unit") == "record":
        privacy.pop("unit")
        privacy.pop("max_records_per_patient", None)
    if not recipe.train.early_stopping:  # fingerprints of fixed-epoch audits stay as they were
        for name in ("early_stopping", "validation_fraction", "validation_metric"):
            train.pop(name, None)
    described = {
        "model": [type(recipe.model_factory).__qualname__, _plain(recipe.model_factory)],
        "privacy": privacy,
        "train": train,
        "data": pool.content_digest(),
    }
    if recipe.kept_epochs is not None:
        described["kept_epochs"] = recipe.kept_epochs
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=repr).encode()).hexdigest()


def _plain(config: object) -> object:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)


@dataclass(frozen=True)
class _Task:
    index: int
    patients: np.ndarray
    seed: int
    plan: PrivacyPlan
    probes: tuple[AttributeProbe, ...] = ()


def _training_size(pool: Cohort, patient_mask: np.ndarray, unit: str) -> tuple[int, int]:
    """(privacy units, largest records per patient) of one model's training set.

    The units are records, or patients for ``privacy.unit=patient``.
    """
    per_patient = pool.records_per_patient[patient_mask]
    n_units = len(per_patient) if unit == "patient" else int(per_patient.sum())
    return n_units, int(per_patient.max(initial=0))


def _plan_per_size(
    pool: Cohort, membership: np.ndarray, recipe: Recipe
) -> dict[tuple[int, int], PrivacyPlan]:
    """The privacy plan of each distinct training-set size (usually one or two), made once.

    Keyed by (privacy units, largest records per patient): records at record level, patients
    at patient level, where the plan samples and accounts over patients.
    """
    unit = recipe.privacy.unit
    sizes = {_training_size(pool, mask, unit) for mask in membership}
    plans = {
        (n_units, largest): PrivacyPlan.for_training_set(
            recipe.privacy,
            n_units=n_units,
            batch_size=recipe.train.batch_size,
            epochs=recipe.train.epochs,
            max_records_per_patient=largest,
        )
        for n_units, largest in sizes
    }
    if recipe.kept_epochs is None:
        return plans
    # σ is the one calibrated for all planned epochs, as in the target run; the models stop at E*.
    return {size: first_epochs(plan, recipe.kept_epochs) for size, plan in plans.items()}


def _train_one(
    task: _Task, shared: tuple[Cohort, Recipe, tuple[KnowledgeLevel, ...]]
) -> ReferenceModelOutput:
    """One model, in whichever process the executor runs it.

    Always one intra-op thread (restored afterwards when it runs in the caller's process), so
    the signals are the same bits on every executor.
    """
    pool, recipe, knowledge = shared
    with intra_op_threads(1):
        model = fit(
            cohort=pool.subset_by_patients(task.patients),
            model_factory=recipe.model_factory,
            privacy=recipe.privacy,
            train=recipe.model_train,
            seed=task.seed,
            plan=task.plan,
        )
        signals = true_label_confidence(model.predict_logits(pool.features), pool.labels)

        def predict_signals(features: Records) -> np.ndarray:
            return true_label_confidence(model.predict_logits(features), pool.labels)

        attribute_signals = None
        if task.probes:  # after the signals, which stay the same bits with or without probes
            attribute_signals = candidate_signals(predict_signals, pool.features, task.probes)
        imputed_signals = knowledge_signals(predict_signals, pool.features, knowledge)
    return ReferenceModelOutput(
        index=task.index,
        signals=signals,
        privacy=model.privacy,
        train_seconds=model.wall_seconds,
        attribute_signals=attribute_signals,
        attribute_key=probes_key(task.probes),
        knowledge_signals=imputed_signals,
        knowledge_key=knowledge_key(knowledge),
    )
