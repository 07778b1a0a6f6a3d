"""A training run interrupted after a checkpoint and resumed equals one that never stopped."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from dptrain.data.cohort import Cohort
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig
from dptrain.training.fit import EpochLog, TrainedModel, fit
from dptrain.training.resume import TRAINING_STATE_FILE
from dptrain.training.selection import validation_split

EPOCHS = 4
MODEL = MLPConfig(hidden=[16], dropout=0.2)  # dropout: the forked global RNG matters too
RECIPES = {
    "record-dp-ema": (
        PrivacyConfig(epsilon=4.0, unit="record"),
        TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.01, ema_decay=0.9),
    ),
    "patient-dp-sgd": (
        PrivacyConfig(epsilon=4.0, unit="patient", max_records_per_patient=2),
        TrainConfig(epochs=EPOCHS, batch_size=16, lr=0.05, optimizer="sgd"),
    ),
    "non-private": (
        PrivacyConfig(mode="none"),
        TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.01),
    ),
}


class Killed(Exception):
    """Stands in for the process dying after some epoch."""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    csv = write_fake_ehr_table(
        tmp_path_factory.mktemp("data") / "visits.csv",
        n_patients=120,
        max_records_per_patient=3,
        signal=3.0,
        seed=0,
    )
    return TableDataConfig(
        path=str(csv),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex", "age"],
    ).load()


def _fit(cohort, recipe: str, *, seed: int = 0, state_path=None, stop_after=None, on_epoch=None):
    privacy, train = RECIPES[recipe]

    def epoch_done(entry: EpochLog) -> None:
        if on_epoch is not None:
            on_epoch(entry)
        if stop_after is not None and entry.epoch == stop_after:
            raise Killed

    return fit(
        cohort=cohort,
        model_factory=MODEL,
        privacy=privacy,
        train=train,
        seed=seed,
        state_path=state_path,
        on_epoch=epoch_done,
    )


def _assert_same_run(resumed: TrainedModel, uninterrupted: TrainedModel) -> None:
    for name, tensor in uninterrupted.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], tensor), name
    assert resumed.accountant_state == uninterrupted.accountant_state
    assert resumed.privacy == uninterrupted.privacy
    assert resumed.history == uninterrupted.history


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(cohort, tmp_path, recipe):
    uninterrupted = _fit(cohort, recipe)
    state = tmp_path / TRAINING_STATE_FILE
    # Killed during epoch 3's report: the state of epoch 2 is on disk, epoch 3 is trained again.
    with pytest.raises(Killed):
        _fit(cohort, recipe, state_path=state, stop_after=3)
    assert torch.load(state, weights_only=True)["epoch"] == 2
    replayed: list[int] = []
    resumed = _fit(cohort, recipe, state_path=state, on_epoch=lambda e: replayed.append(e.epoch))
    _assert_same_run(resumed, uninterrupted)
    assert replayed == list(range(1, EPOCHS + 1))  # the tracker still sees every epoch once
    if recipe != "non-private":
        spend = resumed.privacy  # every step counted once: none twice, none missing
        assert resumed.accountant_state["history"] == [
            (spend.noise_multiplier, spend.sample_rate, spend.steps)
        ]
    # The state after the last epoch stays until the caller removes it: a re-launch after a kill
    # during the audit redoes no epoch and gets the same model.
    assert torch.load(state, weights_only=True)["epoch"] == EPOCHS
    _assert_same_run(_fit(cohort, recipe, state_path=state), uninterrupted)


def test_writing_checkpoints_draws_no_randomness(cohort, tmp_path):
    plain = _fit(cohort, "record-dp-ema")
    checkpointed = _fit(cohort, "record-dp-ema", state_path=tmp_path / TRAINING_STATE_FILE)
    _assert_same_run(checkpointed, plain)


def test_a_state_of_another_run_is_ignored_with_a_warning(cohort, tmp_path, caplog):
    state = tmp_path / TRAINING_STATE_FILE
    with pytest.raises(Killed):
        _fit(cohort, "record-dp-ema", seed=0, state_path=state, stop_after=3)
    with caplog.at_level(logging.WARNING, logger="dptrain.training.resume"):
        other_seed = _fit(cohort, "record-dp-ema", seed=1, state_path=state)
    assert "another config" in caplog.text
    _assert_same_run(other_seed, _fit(cohort, "record-dp-ema", seed=1))


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04truncated"])
def test_a_corrupt_state_is_ignored_and_training_starts_over(cohort, tmp_path, caplog, content):
    state = tmp_path / TRAINING_STATE_FILE
    state.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="dptrain.training.resume"):
        model = _fit(cohort, "non-private", state_path=state)
    assert "training from scratch" in caplog.text
    _assert_same_run(model, _fit(cohort, "non-private"))
    assert torch.load(state, weights_only=True)["epoch"] == EPOCHS  # replaced by a good one


def test_checkpoints_are_written_every_n_epochs_and_after_the_last(cohort, tmp_path):
    privacy = PrivacyConfig(mode="none")
    state = tmp_path / TRAINING_STATE_FILE
    seen: list[int | None] = []

    def epoch_done(entry: EpochLog) -> None:
        # on_epoch runs before that epoch's checkpoint: the file holds the one before.
        seen.append(torch.load(state, weights_only=True)["epoch"] if state.exists() else None)

    fit(
        cohort=cohort,
        model_factory=MODEL,
        privacy=privacy,
        train=TrainConfig(epochs=5, batch_size=32, checkpoint_every=2),
        seed=0,
        state_path=state,
        on_epoch=epoch_done,
    )
    assert seen == [None, None, 2, 2, 4]
    assert torch.load(state, weights_only=True)["epoch"] == 5


def test_checkpoint_every_zero_writes_nothing(cohort, tmp_path):
    state = tmp_path / TRAINING_STATE_FILE
    fit(
        cohort=cohort,
        model_factory=MODEL,
        privacy=PrivacyConfig(mode="none"),
        train=TrainConfig(epochs=2, batch_size=32, checkpoint_every=0),
        seed=0,
        state_path=state,
    )
    assert not state.exists()


@pytest.mark.parametrize("bad", [-1, True])
def test_checkpoint_every_must_be_a_non_negative_int(bad):
    with pytest.raises(ConfigError, match=r"train\.checkpoint_every must be >= 0"):
        TrainConfig(checkpoint_every=bad)


def _fit_early_stopping(split, *, state_path=None, stop_after=None, on_epoch=None):
    """DP-SGD with a moving average and early stopping: the best-so-far weights are state too."""

    def epoch_done(entry: EpochLog) -> None:
        if on_epoch is not None:
            on_epoch(entry)
        if stop_after is not None and entry.epoch == stop_after:
            raise Killed

    return fit(
        cohort=split.train,
        validation=split.validation,
        model_factory=MODEL,
        privacy=PrivacyConfig(epsilon=4.0, unit="record"),
        train=TrainConfig(
            epochs=EPOCHS, batch_size=32, lr=0.01, ema_decay=0.9, early_stopping=True
        ),
        seed=0,
        state_path=state_path,
        on_epoch=epoch_done,
    )


@pytest.mark.parametrize("stop_after", [2, 3])
def test_early_stopping_resumes_with_its_best_epoch_bit_identical(cohort, tmp_path, stop_after):
    split = validation_split(cohort, fraction=0.25, seed=0)
    uninterrupted = _fit_early_stopping(split)
    assert all(not math.isnan(entry.validation) for entry in uninterrupted.history)
    state = tmp_path / TRAINING_STATE_FILE
    with pytest.raises(Killed):
        _fit_early_stopping(split, state_path=state, stop_after=stop_after)
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] == stop_after - 1 and saved["payload"]["selection"]["best_epoch"] >= 1
    resumed = _fit_early_stopping(split, state_path=state)
    _assert_same_run(resumed, uninterrupted)
    assert resumed.kept_epoch == uninterrupted.kept_epoch
    assert resumed.validation_score == uninterrupted.validation_score


def test_a_state_without_early_stopping_is_not_resumed_with_it(cohort, tmp_path, caplog):
    split = validation_split(cohort, fraction=0.25, seed=0)
    state = tmp_path / TRAINING_STATE_FILE
    fit(
        cohort=split.train,
        model_factory=MODEL,
        privacy=PrivacyConfig(epsilon=4.0, unit="record"),
        train=TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.01, ema_decay=0.9),
        seed=0,
        state_path=state,
    )
    with caplog.at_level(logging.WARNING, logger="dptrain.training.resume"):
        model = _fit_early_stopping(split, state_path=state)
    assert "another config" in caplog.text  # the finished fixed-epoch state is not reused
    _assert_same_run(model, _fit_early_stopping(split))
