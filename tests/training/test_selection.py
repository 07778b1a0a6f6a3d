"""Early stopping: validation patients outside the training data choose the epoch kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dptrain.audit.reference import Recipe, recipe_fingerprint, train_reference_models
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError, DataError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit
from dptrain.training.selection import first_epochs, validation_split

MODEL = MLPConfig(hidden=[128])
NON_PRIVATE = PrivacyConfig(mode="none")
# A tiny noisy table on which this recipe overfits after a few epochs: the validation loss
# falls, then rises (planted; measured minimum at epoch 4 of 12).
OVERFITTING = TrainConfig(
    epochs=12, batch_size=16, lr=0.002, early_stopping=True, validation_metric="loss"
)


@pytest.fixture(scope="module")
def noisy() -> Cohort:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 20)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(size=120) > 0).astype(np.int64)
    return Cohort.from_records(
        name="noisy", features=features, labels=labels, patient_ids=np.arange(120)
    )


@pytest.fixture(scope="module")
def halves(noisy):
    return validation_split(noisy, fraction=0.5, seed=0)


def _same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(
        torch.equal(tensor, second.state_dict()[name])
        for name, tensor in first.state_dict().items()
    )


def test_validation_split_is_by_patient_stratified_and_disjoint():
    labels = np.repeat([0, 0, 0, 1], 25)  # 100 records of 50 patients, 2 records each
    cohort = Cohort.from_records(
        name="toy",
        features=np.zeros((100, 1), np.float32),
        labels=labels,
        patient_ids=np.repeat(np.arange(50), 2),
    )
    split = validation_split(cohort, fraction=0.2, seed=3)
    assert split.validation.n_patients == 10 and split.train.n_patients == 40
    assert not set(split.validation.patients) & set(split.train.patients)
    assert split.validation.n_records == 20  # a patient goes with all of their records
    share = split.validation.labels.mean()
    assert share == pytest.approx(cohort.labels.mean(), abs=0.05)  # stratified by label
    again = validation_split(cohort, fraction=0.2, seed=3)
    assert np.array_equal(again.validation_patients, split.validation_patients)


@pytest.mark.parametrize("fraction", [0.01, 0.5])
def test_too_few_validation_patients_or_classes_name_the_minimum(fraction):
    # 9 patients of one class, 1 of the other: 0.01 leaves none, 0.5 cannot hold the rare one.
    cohort = Cohort.from_records(
        name="toy",
        features=np.zeros((10, 1), np.float32),
        labels=[0] * 9 + [1],
        patient_ids=np.arange(10),
    )
    with pytest.raises(ConfigError) as error:
        validation_split(cohort, fraction=fraction, seed=0)
    message = str(error.value)
    assert "\n" not in message and f"train.validation_fraction={fraction}" in message
    assert "at least one validation patient of each class" in message


@pytest.mark.parametrize("metric", ["loss", "auroc"])
def test_the_kept_epoch_is_the_best_validation_epoch_and_its_weights(halves, metric):
    train = dataclasses.replace(OVERFITTING, validation_metric=metric)
    model = fit(
        cohort=halves.train,
        validation=halves.validation,
        model_factory=MODEL,
        privacy=NON_PRIVATE,
        train=train,
        seed=0,
    )
    scores = np.array([entry.validation for entry in model.history])
    best = np.argmin(scores) if metric == "loss" else np.argmax(scores)
    assert model.kept_epoch == best + 1 and model.epochs_run == train.epochs
    assert model.validation_score == scores[best] and model.validation_patients == 60
    if metric == "loss":
        assert 1 < model.kept_epoch < train.epochs  # the planted overfitting is caught
    # The kept weights are those of a run that stops at the kept epoch.
    stopped = fit(
        cohort=halves.train,
        model_factory=MODEL,
        privacy=NON_PRIVATE,
        train=dataclasses.replace(train, epochs=model.kept_epoch, early_stopping=False),
        seed=0,
    )
    assert _same_weights(model.module, stopped.module)


def test_scoring_draws_no_randomness_so_training_is_unchanged(halves):
    """The losses (the steps) of a run are the same bits with and without early stopping."""
    private = PrivacyConfig(epsilon=4.0)
    train = TrainConfig(epochs=3, batch_size=16, lr=0.01, ema_decay=0.5)
    plain = fit(
        cohort=halves.train, model_factory=MLPConfig(hidden=[8], dropout=0.2), privacy=private,
        train=train, seed=1,
    )  # fmt: skip
    selected = fit(
        cohort=halves.train,
        validation=halves.validation,
        model_factory=MLPConfig(hidden=[8], dropout=0.2),
        privacy=private,
        train=dataclasses.replace(train, early_stopping=True),
        seed=1,
    )
    assert [e.loss for e in selected.history] == [e.loss for e in plain.history]
    assert selected.privacy == plain.privacy  # ε covers every epoch run, not the kept one
    assert plain.kept_epoch == plain.epochs_run == 3 and np.isnan(plain.validation_score)


def test_a_dp_run_kept_at_epoch_e_equals_a_run_of_e_epochs_with_the_full_plans_sigma(halves):
    """Why the audit's models train E* epochs with the σ planned for all epochs (`first_epochs`)."""
    private = PrivacyConfig(epsilon=4.0, accountant="rdp")
    train = TrainConfig(epochs=4, batch_size=16, lr=0.05, early_stopping=True)
    model = fit(
        cohort=halves.train,
        validation=halves.validation,
        model_factory=MLPConfig(hidden=[8]),
        privacy=private,
        train=train,
        seed=2,
    )
    full = PrivacyPlan.for_training_set(
        private, n_units=halves.train.n_records, batch_size=16, epochs=4
    )
    kept = model.kept_epoch
    stopped = fit(
        cohort=halves.train,
        model_factory=MLPConfig(hidden=[8]),
        privacy=private,
        train=dataclasses.replace(train, epochs=kept, early_stopping=False),
        seed=2,
        plan=first_epochs(full, kept),
    )
    assert _same_weights(model.module, stopped.module)
    assert stopped.privacy.noise_multiplier == model.privacy.noise_multiplier
    assert stopped.privacy.steps == kept * full.steps_per_epoch


def test_validation_patients_come_only_with_early_stopping_and_never_in_training(halves):
    kwargs = {"model_factory": MODEL, "privacy": NON_PRIVATE, "seed": 0}
    with pytest.raises(ConfigError, match=r"train\.early_stopping needs validation patients"):
        fit(cohort=halves.train, train=OVERFITTING, **kwargs)
    with pytest.raises(ConfigError, match=r"train\.early_stopping needs validation patients"):
        fit(
            cohort=halves.train,
            validation=halves.validation,
            train=dataclasses.replace(OVERFITTING, early_stopping=False),
            **kwargs,
        )
    overlapping = halves.train.subset_by_patients(np.arange(5))
    with pytest.raises(DataError, match="must not be among the training patients"):
        fit(cohort=halves.train, validation=overlapping, train=OVERFITTING, **kwargs)


def test_audit_models_train_exactly_the_kept_epochs_on_their_whole_halves(noisy):
    train = TrainConfig(epochs=5, batch_size=16, early_stopping=True)
    private = PrivacyConfig(epsilon=4.0, accountant="rdp")
    recipe = Recipe(MLPConfig(hidden=[8]), private, train, kept_epochs=2)
    membership = np.zeros((2, noisy.n_patients), dtype=bool)
    membership[0, ::2] = True
    membership[1] = ~membership[0]
    outputs = train_reference_models(pool=noisy, membership=membership, recipe=recipe, seed=0)
    for output, row in zip(outputs, membership):
        spend = output.privacy
        n_units = int(row.sum())  # the whole half: no validation patients taken out of it
        planned = PrivacyPlan.for_training_set(private, n_units=n_units, batch_size=16, epochs=5)
        assert spend.n_units == n_units and spend.epochs == 2
        assert spend.steps == 2 * planned.steps_per_epoch
        assert spend.noise_multiplier == planned.noise_multiplier  # σ of all 5 planned epochs
        assert spend.epsilon < planned.spend().epsilon  # ε of the 2 epochs trained
    fixed = Recipe(MLPConfig(hidden=[8]), private, dataclasses.replace(train, early_stopping=False))
    assert recipe_fingerprint(recipe, noisy) != recipe_fingerprint(
        dataclasses.replace(recipe, kept_epochs=3), noisy
    )
    assert recipe_fingerprint(fixed, noisy) != recipe_fingerprint(recipe, noisy)
    with pytest.raises(ValueError, match="kept epochs"):
        Recipe(MLPConfig(), private, train)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("validation_fraction", 0.0, r"train\.validation_fraction must be in \(0, 0\.5\]"),
        ("validation_fraction", 0.7, r"train\.validation_fraction must be in \(0, 0\.5\]"),
        ("validation_metric", "f1", r"train\.validation_metric must be one of"),
        ("early_stopping", "yes", r"train\.early_stopping must be true or false"),
    ],
)
def test_bad_early_stopping_values_are_one_line_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        TrainConfig(**{field: value})
    assert "\n" not in str(error.value)
