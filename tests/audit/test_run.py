"""Behaviour of the whole audit: leaky models are caught, private ones stay under their bound."""

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.run import analyse_signals, run_audit
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.splits import balanced_membership_masks
from dptrain.data.tables import TableDataConfig
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

# Memorisation recipe: labels carry little signal, a wide MLP, many epochs over a tiny cohort.
OVERFIT = TrainConfig(epochs=60, batch_size=16, lr=0.01, class_weights="none")
AUDIT = AuditConfig(num_models=8, workers=1, rmia_num_population=200, min_models_for_patients=8)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    path = write_fake_ehr_table(
        tmp_path_factory.mktemp("audit") / "visits.csv",
        n_patients=80,
        max_records_per_patient=3,
        signal=0.5,
        seed=7,
    )
    return TableDataConfig(
        path=str(path),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex", "age"],
        subgroup_columns=["sex"],
    ).load()


def audit_with(cohort, privacy: PrivacyConfig):
    return run_audit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[128, 128]),
        privacy=privacy,
        train=OVERFIT,
        audit=AUDIT,
        seed=0,
    )


@pytest.fixture(scope="module")
def leaky(cohort):
    return audit_with(cohort, PrivacyConfig(mode="none"))


@pytest.fixture(scope="module")
def private(cohort):
    return audit_with(cohort, PrivacyConfig(epsilon=0.5, delta=1e-4, unit="record"))


@pytest.mark.slow
def test_an_overfit_non_private_model_is_caught(leaky):
    best = next(a for a in leaky.attacks if a.name == leaky.best_attack)
    assert best.metrics.auc > 0.65 and best.auc_interval.lower > 0.55
    assert leaky.patients.max_auc > 0.9
    assert leaky.patients.exposed[list(leaky.patients.thresholds).index(0.9)] > 0
    assert leaky.bounds.record.method == "non-private" and leaky.bounds.record.max_auc == 1.0


@pytest.mark.slow
def test_membership_is_per_patient_and_risk_is_the_max_of_their_records(cohort, leaky):
    record_membership = cohort.record_mask(leaky.membership)
    for model_mask in record_membership:
        # all records of a patient are in or out together
        assert all(len(set(model_mask[cohort.record_patient == p])) == 1 for p in range(5))
    per_record = leaky.record_vulnerability.auc
    for p in np.flatnonzero(cohort.records_per_patient > 1)[:5]:
        assert leaky.patient_risk.auc[p] == np.nanmax(per_record[cohort.record_patient == p])
    assert leaky.bounds.group_size == cohort.records_per_patient.max() > 1


@pytest.mark.slow
def test_control_with_members_and_non_members_from_the_same_side_is_chance(cohort, leaky):
    """Masks independent of training: 'members' and 'non-members' are alike; AUC must be 0.5."""
    unrelated = balanced_membership_masks(
        patient_labels=cohort.patient_labels, num_models=AUDIT.num_models, seed=12345
    )
    control = analyse_signals(
        signals=leaky.signals,
        membership=unrelated,
        cohort=cohort,
        model_privacy=leaky.model_privacy,
        audit=AUDIT,
        seed=0,
    )
    for attack in control.attacks:
        assert attack.auc_interval.lower <= 0.5 <= attack.auc_interval.upper, attack.name
        assert abs(attack.metrics.auc - 0.5) < 0.06, attack.name


@pytest.mark.slow
def test_flipping_membership_flips_the_auc_around_one_half(cohort, leaky):
    flipped = analyse_signals(
        signals=leaky.signals,
        membership=~leaky.membership,
        cohort=cohort,
        model_privacy=leaky.model_privacy,
        audit=AUDIT,
        seed=0,
    )
    by_name = {attack.name: attack.metrics.auc for attack in leaky.attacks}
    loss_flipped = next(a for a in flipped.attacks if a.name == "loss").metrics.auc
    assert loss_flipped == pytest.approx(1 - by_name["loss"])  # same scores, labels swapped
    for attack in flipped.attacks:  # attacks refitted on the flipped labels lose their edge
        assert attack.metrics.auc < 0.5 < by_name[attack.name] or attack.name != "loss"


@pytest.mark.slow
def test_a_strongly_private_model_stays_under_its_dp_bounds(private):
    bounds = private.bounds
    assert private.model_privacy.epsilon <= 0.5
    assert not bounds.record.vacuous and bounds.record.max_auc < 0.7
    assert bounds.patient.max_auc >= bounds.record.max_auc  # k records: weaker guarantee
    # membership is per patient (up to 3 records): the patient-level guarantee is what applies
    assert private.model_privacy.epsilon < bounds.patient_epsilon
    assert bounds.patient.max_auc <= bounds.classic_group_privacy.max_auc
    for attack in private.attacks:
        assert attack.metrics.auc <= bounds.patient.max_auc, attack.name
        assert attack.epsilon_lower_bound.epsilon <= bounds.patient_epsilon, attack.name
    assert private.patients.median_auc < bounds.patient.max_auc
    assert private.patients.above_dp_bound_p_value > 0.01  # exceedances explained by chance
    assert not any("more than chance" in message for message in private.warnings)


def test_more_patients_above_the_dp_bound_than_chance_explains_raises_a_warning(cohort):
    """Signals that separate IN from OUT far beyond what a claimed ε = 0.5 allows: flagged."""
    from dptrain.privacy.accounting import PrivacySpend

    rng = np.random.default_rng(0)
    membership = balanced_membership_masks(
        patient_labels=cohort.patient_labels, num_models=32, seed=0
    )
    record_membership = cohort.record_mask(membership)
    signals = rng.normal(size=record_membership.shape) + 2.0 * record_membership
    claimed = PrivacySpend(
        private=True,
        unit="record",
        epsilon=0.5,
        epsilon_rdp=0.55,
        epsilon_target=0.5,
        delta=1e-4,
        noise_multiplier=5.0,
        sample_rate=0.1,
        steps=100,
        epochs=10,
        max_grad_norm=1.0,
        accountant="prv",
        n_units=cohort.n_records,
        max_records_per_patient=3,
    )
    result = analyse_signals(
        signals=signals,
        membership=membership,
        cohort=cohort,
        model_privacy=claimed,
        audit=AUDIT,
        seed=0,
    )
    assert result.patients.above_dp_bound > 0.5 * result.patients.n_patients
    assert result.patients.above_dp_bound_p_value < 1e-6
    assert any("more than chance explains" in message for message in result.warnings)
