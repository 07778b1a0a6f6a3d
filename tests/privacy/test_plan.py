import math

import numpy as np
import pytest
from opacus.accountants.utils import get_noise_multiplier

from dptrain.audit.reference import Recipe, _plan_per_size, recipe_fingerprint
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig


def test_plan_is_opacus_calibration_for_its_loader():
    privacy = PrivacyConfig(epsilon=3.0)
    plan = PrivacyPlan.for_training_set(privacy, n_units=1000, batch_size=64, epochs=4)
    batches = math.ceil(1000 / 64)
    assert plan.sample_rate == 1 / batches and plan.steps == 4 * batches
    assert plan.steps_per_epoch == batches and plan.delta == 1e-5 and plan.unit == "record"
    expected = get_noise_multiplier(
        target_epsilon=3.0,
        target_delta=1e-5,
        sample_rate=1 / batches,
        steps=4 * batches,
        accountant="prv",
    )
    assert plan.noise_multiplier == pytest.approx(expected)
    spend = plan.spend()
    assert 2.9 < spend.epsilon <= 3.0 and spend.n_units == 1000
    assert len(plan.epsilon_curve) == 4 and plan.epsilon_curve[-1] == spend.epsilon
    assert plan.epsilon_rdp_curve[-1] == spend.epsilon_rdp
    assert plan.accountant_history() == [(plan.noise_multiplier, plan.sample_rate, plan.steps)]


def test_non_private_plan_and_bad_plans():
    plan = PrivacyPlan.for_training_set(
        PrivacyConfig(mode="none"), n_units=10, batch_size=4, epochs=1
    )
    assert plan.noise_multiplier == 0 and math.isinf(plan.spend().epsilon)
    with pytest.raises(ConfigError, match=r"privacy\.unit must be one of"):
        PrivacyConfig(unit="x")
    with pytest.raises(ConfigError, match=r"empty"):
        PrivacyPlan.for_training_set(PrivacyConfig(), n_units=0, batch_size=4, epochs=1)


def test_audit_asks_the_plan_once_per_training_set_size():
    cohort = Cohort.from_records(
        name="toy",
        features=np.zeros((7, 1)),
        labels=[0, 1, 0, 1, 0, 1, 1],
        patient_ids=["a", "a", "b", "c", "d", "d", "d"],
    )
    membership = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    recipe = Recipe(MLPConfig(), PrivacyConfig(epsilon=2.0), TrainConfig(batch_size=2, epochs=1))
    plans = _plan_per_size(cohort, membership, recipe)
    assert set(plans) == {(3, 2), (4, 3)}  # (records, largest patient) of the four models
    for (n_records, largest), plan in plans.items():
        fresh = PrivacyPlan.for_training_set(
            recipe.privacy,
            n_units=n_records,
            batch_size=2,
            epochs=1,
            max_records_per_patient=largest,
        )
        assert plan == fresh


def test_patient_level_audit_plans_over_patients():
    cohort = Cohort.from_records(
        name="toy",
        features=np.zeros((7, 1)),
        labels=[0, 1, 0, 1, 0, 1, 1],
        patient_ids=["a", "a", "b", "c", "d", "d", "d"],
    )
    membership = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    privacy = PrivacyConfig(epsilon=2.0, unit="patient", accountant="rdp")
    recipe = Recipe(MLPConfig(), privacy, TrainConfig(batch_size=1, epochs=1))
    plans = _plan_per_size(cohort, membership, recipe)
    # Every model has 2 patients; the largest patient has 2 or 3 records.
    assert set(plans) == {(2, 2), (2, 3)}
    for plan in plans.values():
        assert plan.unit == "patient" and plan.n_units == 2 and plan.sample_rate == 0.5


def test_record_fingerprint_ignores_the_patient_only_fields():
    cohort = Cohort.from_records(
        name="toy", features=np.zeros((3, 1)), labels=[0, 1, 1], patient_ids=["a", "a", "b"]
    )

    def fingerprint(unit: str = "record", **privacy) -> str:
        return recipe_fingerprint(
            Recipe(MLPConfig(), PrivacyConfig(unit=unit, **privacy), TrainConfig()), cohort
        )

    record = fingerprint()
    assert record == fingerprint(max_records_per_patient=5)  # the cap acts only per patient
    patient = fingerprint(unit="patient")
    assert patient != record and patient != fingerprint(unit="patient", max_records_per_patient=5)
