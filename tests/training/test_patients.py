"""Patient-level training: the per-patient dataset and loss, and `fit` with unit=patient."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from dptrain.data.cohort import Cohort
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit
from dptrain.training.loop import RecordLoss, TensorRecords
from dptrain.training.patients import PatientLoss, PatientRecords

TRAIN = TrainConfig(epochs=2, batch_size=16, lr=0.05, max_physical_batch_size=4)
# RDP calibrates in a second where PRV takes two; the PLD check below plans with PRV.
PATIENT = PrivacyConfig(epsilon=4.0, unit="patient", accountant="rdp")


def load(tmp_path, *, max_records: int) -> Cohort:
    csv = write_fake_ehr_table(
        tmp_path / "visits.csv",
        n_patients=120,
        max_records_per_patient=max_records,
        signal=3.0,
        seed=0,
    )
    return TableDataConfig(
        path=str(csv),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex", "age"],
    ).load()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    cohort = load(tmp_path_factory.mktemp("multi"), max_records=3)
    assert cohort.records_per_patient.max() == 3 and cohort.n_records > cohort.n_patients
    return cohort


@pytest.fixture(scope="module")
def patient_model(cohort):
    return fit(
        cohort=cohort, model_factory=MLPConfig(hidden=[8]), privacy=PATIENT, train=TRAIN, seed=0
    )


def toy_records(record_patient: list[int]) -> PatientRecords:
    n_records = len(record_patient)
    features = torch.arange(n_records, dtype=torch.float32)[:, None]
    records = TensorRecords(features, torch.zeros(n_records, dtype=torch.long))
    patients = np.asarray(record_patient, dtype=np.int64)
    return PatientRecords(records, patients, n_patients=int(patients.max()) + 1)


def test_patient_batches_concatenate_records_with_their_patient():
    dataset = toy_records([1, 0, 1, 2, 1, 2])
    assert len(dataset) == 3
    features, labels, record_patient = dataset.__getitems__([2, 0])
    assert features[:, 0].tolist() == [3.0, 5.0, 1.0]  # patient 2's records, then patient 0's
    assert record_patient.tolist() == [0, 0, 1] and len(labels) == 3
    features, labels, record_patient = dataset.__getitems__([])
    assert features.shape == (0, 1) and labels.shape == (0,) and record_patient.shape == (0,)


def test_cap_subsamples_each_step_reproducibly():
    def draws(seed: int) -> list[list[float]]:
        dataset = toy_records([0] * 6 + [1, 1])
        dataset.max_records = 2
        dataset.generator = torch.Generator().manual_seed(seed)
        batches = [dataset.__getitems__([0, 1]) for _ in range(8)]
        return [features[:, 0].tolist() for features, _, _ in batches]

    first = draws(seed=5)
    assert first == draws(seed=5)
    assert first != draws(seed=6)
    for batch in first:
        capped, whole = batch[:2], batch[2:]
        assert len(set(capped)) == 2 and set(capped) <= {0, 1, 2, 3, 4, 5}
        assert whole == [6.0, 7.0]  # a patient under the cap keeps all its records
    assert len({tuple(batch[:2]) for batch in first}) > 1  # a new subsample every step


def test_patient_loss_is_the_mean_over_patients_of_their_mean_record_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=generator)
    labels = torch.randint(0, 3, (6,), generator=generator)
    record_patient = torch.tensor([0, 1, 1, 2, 2, 2])
    loss = PatientLoss(RecordLoss(multilabel=False, class_weights=None))
    per_patient = [
        F.cross_entropy(logits[record_patient == p], labels[record_patient == p]) for p in range(3)
    ]
    torch.testing.assert_close(loss(logits, labels, record_patient), sum(per_patient) / 3)


def test_accountant_records_the_planned_patient_steps(cohort, patient_model):
    spend = patient_model.privacy
    batches = math.ceil(cohort.n_patients / TRAIN.batch_size)
    assert spend.unit == "patient" and spend.n_units == cohort.n_patients
    assert spend.sample_rate == 1 / batches and spend.steps == TRAIN.epochs * batches
    assert spend.delta == 1e-5 and spend.max_records_per_patient == 3
    assert patient_model.accountant_state["history"] == [
        (spend.noise_multiplier, spend.sample_rate, spend.steps)
    ]
    assert patient_model.grad_sample_mode == "hooks"  # auto never picks ghost for patients
    assert 3.9 < spend.epsilon <= 4.0 and spend.accountant == "rdp"


def test_reported_epsilon_matches_dp_accounting_pld(cohort):
    privacy = PrivacyConfig(epsilon=4.0, unit="patient", accountant="prv")
    plan = PrivacyPlan.for_training_set(
        privacy, n_units=cohort.n_patients, batch_size=TRAIN.batch_size, epochs=TRAIN.epochs
    )
    spend = plan.spend()
    assert spend.unit == "patient" and spend.accountant == "prv"
    pld = pld_lib.from_gaussian_mechanism(
        standard_deviation=spend.noise_multiplier,
        sampling_prob=spend.sample_rate,
        value_discretization_interval=1e-3,
    ).self_compose(spend.steps)
    assert spend.epsilon == pytest.approx(pld.get_epsilon_for_delta(spend.delta), rel=0.01)


def test_cap_never_changes_the_privacy_parameters(cohort, patient_model):
    capped = dataclasses.replace(PATIENT, max_records_per_patient=1)
    model = fit(
        cohort=cohort, model_factory=MLPConfig(hidden=[8]), privacy=capped, train=TRAIN, seed=0
    )
    for field in ("noise_multiplier", "sample_rate", "steps", "delta", "epsilon"):
        assert getattr(model.privacy, field) == getattr(patient_model.privacy, field)
    assert model.accountant_state["history"] == patient_model.accountant_state["history"]
    weights = [p.detach() for p in model.module.parameters()]
    uncapped = [p.detach() for p in patient_model.module.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(weights, uncapped))  # the cap did act


def test_one_record_per_patient_is_the_record_level_run(tmp_path):
    cohort = load(tmp_path, max_records=1)
    assert cohort.n_records == cohort.n_patients
    models = {
        unit: fit(
            cohort=cohort,
            model_factory=MLPConfig(hidden=[8]),
            privacy=dataclasses.replace(PATIENT, unit=unit, grad_sample_mode="hooks"),
            train=TRAIN,
            seed=0,
        )
        for unit in ("record", "patient")
    }
    record, patient = models["record"].privacy, models["patient"].privacy
    for field in ("noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "n_units"):
        assert getattr(record, field) == getattr(patient, field)
    assert (record.unit, patient.unit) == ("record", "patient")
    # Same sampled units, same per-unit clipping, same noise: the same model.
    for a, b in zip(models["record"].module.parameters(), models["patient"].module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_non_private_patient_level_run_trains(cohort):
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(mode="none", unit="patient"),
        train=TRAIN,
        seed=0,
    )
    assert model.privacy.unit == "patient" and not model.privacy.private
    assert model.history[-1].loss < model.history[0].loss


def test_more_patients_per_batch_than_patients_is_refused(cohort):
    train = TrainConfig(epochs=1, batch_size=cohort.n_patients + 1)
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        fit(
            cohort=cohort, model_factory=MLPConfig(hidden=[8]), privacy=PATIENT, train=train, seed=0
        )
