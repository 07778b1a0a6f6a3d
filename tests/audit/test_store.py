"""Saved model signals: written as each model finishes, so audits resume and extend exactly."""

import dataclasses

import numpy as np
import pytest

import dptrain.audit.reference as reference
from dptrain.audit.config import AuditConfig
from dptrain.audit.reference import Recipe, recipe_fingerprint
from dptrain.audit.run import run_audit
from dptrain.audit.store import ModelStore, ReferenceModelOutput, model_fingerprint
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

from .simulate import non_private_spend

MODEL = MLPConfig(hidden=[16])
PRIVACY = PrivacyConfig(mode="none")
TRAIN = TrainConfig(epochs=2, batch_size=8)  # patients per batch: unit=auto is patient here
AUDIT = AuditConfig(
    num_models=4, workers=1, null_repeats=2, rmia_num_population=50, attacks=["loss", "lira"]
)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = write_fake_ehr_table(
        tmp_path_factory.mktemp("store") / "visits.csv",
        n_patients=30,
        max_records_per_patient=2,
        seed=2,
    )
    return TableDataConfig(
        path=str(path), id_column="patient_id", label_columns=["label"], exclude_columns=["sex"]
    ).load()


def audit_in(run_dir, pool, audit=AUDIT, train=TRAIN):
    return run_audit(
        cohort=pool,
        model_factory=MODEL,
        privacy=PRIVACY,
        train=train,
        audit=audit,
        seed=0,
        output_dir=run_dir,
    )


TRAIN_ONE = reference._train_one


class Interrupted(Exception):
    """A job killed part-way through the audit."""


class CountingTrainer:
    """Counts the models actually trained; optionally fails after `fail_after` of them."""

    def __init__(self, fail_after=None):
        self.trained, self.fail_after = [], fail_after

    def __call__(self, task, shared):
        if self.fail_after is not None and len(self.trained) == self.fail_after:
            raise Interrupted
        self.trained.append(task.index)
        return TRAIN_ONE(task, shared)


@pytest.fixture(scope="module")
def whole_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("whole")


@pytest.fixture(scope="module")
def uninterrupted(pool, whole_run_dir):
    return audit_in(whole_run_dir, pool)


def test_every_model_is_saved_with_its_index_seed_and_privacy(uninterrupted, whole_run_dir):
    store_dir = whole_run_dir / "audit_models"
    assert sorted(p.name for p in store_dir.iterdir()) == [f"model_{k}.npz" for k in range(4)]
    with np.load(store_dir / "model_2.npz") as saved:
        np.testing.assert_array_equal(saved["signals"], uninterrupted.signals[2])
        assert int(saved["index"]) == 2 and int(saved["seed"]) == 3  # seed + 1 + index
        assert "noise_multiplier" in str(saved["privacy"])
    assert not list(store_dir.glob("*.tmp"))
    assert uninterrupted.stopping_reason == "fixed K: audit.num_models = 4"
    assert uninterrupted.models_reused == 0


def test_a_resumed_audit_trains_only_the_missing_models_and_matches(
    uninterrupted, pool, tmp_path, monkeypatch
):
    interrupted = CountingTrainer(fail_after=2)
    monkeypatch.setattr(reference, "_train_one", interrupted)
    with pytest.raises(Interrupted):
        audit_in(tmp_path, pool)
    assert sorted(p.name for p in (tmp_path / "audit_models").iterdir()) == [
        "model_0.npz",
        "model_1.npz",
    ]
    resumed_trainer = CountingTrainer()
    monkeypatch.setattr(reference, "_train_one", resumed_trainer)
    resumed = audit_in(tmp_path, pool)
    assert resumed_trainer.trained == [2, 3] and resumed.models_reused == 2
    np.testing.assert_array_equal(resumed.signals, uninterrupted.signals)
    np.testing.assert_array_equal(resumed.exposure.p_value, uninterrupted.exposure.p_value)
    np.testing.assert_array_equal(resumed.patient_risk.auc, uninterrupted.patient_risk.auc)
    for resumed_attack, attack in zip(resumed.attacks, uninterrupted.attacks, strict=True):
        assert resumed_attack.metrics.auc == attack.metrics.auc
        assert resumed_attack.epsilon_lower_bound == attack.epsilon_lower_bound


def test_an_audit_extends_to_more_models_without_retraining(
    uninterrupted, pool, tmp_path, monkeypatch
):
    audit_in(tmp_path, pool)
    trainer = CountingTrainer()
    monkeypatch.setattr(reference, "_train_one", trainer)
    extended = audit_in(tmp_path, pool, audit=dataclasses.replace(AUDIT, num_models=6))
    assert trainer.trained == [4, 5] and extended.num_models == 6
    np.testing.assert_array_equal(extended.signals[:4], uninterrupted.signals)
    np.testing.assert_array_equal(extended.membership[:4], uninterrupted.membership)


def test_a_changed_recipe_retrains_everything_but_threads_do_not_count(pool, tmp_path, monkeypatch):
    audit_in(tmp_path, pool)
    trainer = CountingTrainer()
    monkeypatch.setattr(reference, "_train_one", trainer)
    audit_in(tmp_path, pool, train=dataclasses.replace(TRAIN, threads=4))
    assert trainer.trained == []
    audit_in(tmp_path, pool, train=dataclasses.replace(TRAIN, lr=0.01))
    assert trainer.trained == [0, 1, 2, 3]


def test_auto_grows_in_rounds_and_says_why_it_stopped(pool, tmp_path):
    audit = dataclasses.replace(
        AUDIT, num_models="auto", auto_round_models=4, max_models=8, auto_tolerance=0.0
    )
    result = audit_in(tmp_path, pool, audit=audit)
    # Rounds of 4; below min_models_for_patients (32) no stable answer may stop it: the budget does.
    assert result.num_models == len(result.signals) == len(result.membership) == 8
    assert result.stopping_reason == "model budget: K = 8 reached audit.max_models"
    assert len(list((tmp_path / "audit_models").glob("model_*.npz"))) == 8


def test_the_fingerprint_covers_data_recipe_seed_and_membership(pool):
    recipe = Recipe(model_factory=MODEL, privacy=PRIVACY, train=TRAIN)
    base = recipe_fingerprint(recipe, pool)
    assert base == recipe_fingerprint(recipe, pool)
    assert base != recipe_fingerprint(dataclasses.replace(recipe, model_factory=MLPConfig()), pool)
    changed = dataclasses.replace(pool, labels=1 - pool.labels)
    assert base != recipe_fingerprint(recipe, changed)
    row = np.arange(30) % 2 == 0
    key = model_fingerprint(base, seed=1, membership_row=row)
    assert key != model_fingerprint(base, seed=1, membership_row=~row)


def test_a_file_from_another_fingerprint_is_ignored(tmp_path):
    store = ModelStore(tmp_path)
    spend = non_private_spend(n_units=10, delta=0.0, sample_rate=0.1, steps=10, epochs=1)
    output = ReferenceModelOutput(index=5, signals=np.arange(3.0), privacy=spend, train_seconds=1)
    store.save(output, seed=6, fingerprint="abc")
    loaded = store.load(5, fingerprint="abc")
    assert loaded.reused and loaded.privacy == spend
    np.testing.assert_array_equal(loaded.signals, output.signals)
    assert store.load(5, fingerprint="other") is None
    assert store.load(4, fingerprint="abc") is None
