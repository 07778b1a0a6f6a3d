"""Patient-level DP-SGD: per-patient clipping against plain autograd, and the plan over patients."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from opacus.grad_sample import wrap_model

from dptrain.errors import ConfigError
from dptrain.models import MODELS
from dptrain.privacy.accounting import PATIENT_GRAD_SAMPLE_MODES, PrivacyConfig
from dptrain.privacy.patient import PatientDPOptimizer
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.loop import RecordLoss
from dptrain.training.patients import PatientLoss
from tests.models.test_per_sample_gradients import CASES

N_CLASSES = 3
# Patients of 1, 2, 5 and 2 records, their records interleaved in the batch.
RECORD_PATIENT = torch.tensor([2, 0, 1, 2, 3, 2, 1, 2, 3, 2])
# Every registered model (the per-sample-gradient test's small cases) in every mode it is verified
# for that patient-level DP-SGD can use.
PARAMS = [
    pytest.param(case, mode, id=f"{case}-{mode}")
    for case, (config, _) in CASES.items()
    for mode in type(config).grad_sample_modes
    if mode in PATIENT_GRAD_SAMPLE_MODES
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_registered_model_has_a_patient_level_case():
    covered = {type(CASES[param.values[0]][0]) for param in PARAMS}
    assert set(MODELS.values()) <= covered


def make_batch(case: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    config, shape = CASES[case]
    torch.manual_seed(0)
    model = config.build(shape, N_CLASSES).double()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(len(RECORD_PATIENT), *shape, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, N_CLASSES, (len(RECORD_PATIENT),), generator=generator)
    return model, inputs, labels


def patient_by_patient_gradients(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> list[list[torch.Tensor]]:
    """Each patient's gradient of the mean of its records' losses, by plain autograd."""
    gradients = []
    for patient in range(int(RECORD_PATIENT.max()) + 1):
        rows = RECORD_PATIENT == patient
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs[rows]), labels[rows]).backward()
        gradients.append([param.grad.detach().clone() for param in model.parameters()])
    return gradients


@pytest.mark.parametrize(("case", "mode"), PARAMS)
def test_per_patient_clipped_sum_matches_patient_by_patient_autograd(case, mode):
    model, inputs, labels = make_batch(case)
    reference = patient_by_patient_gradients(model, inputs, labels)
    norms = torch.stack(
        [torch.cat([grad.flatten() for grad in grads]).norm() for grads in reference]
    )
    max_grad_norm = float(norms.median())  # some patients clipped, some not
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    assert (factors < 1).any() and (factors == 1).any()
    expected = [
        sum(factor * grads[i] for factor, grads in zip(factors, reference))
        for i in range(len(reference[0]))
    ]
    n_patients = len(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = wrap_model(model, mode, batch_first=True, loss_reduction="mean")
        optimizer = PatientDPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=0.1),
            noise_multiplier=0.0,
            max_grad_norm=max_grad_norm,
            expected_batch_size=n_patients,
        )
        criterion = PatientLoss(RecordLoss(multilabel=False, class_weights=None))
        criterion(wrapped(inputs), labels, RECORD_PATIENT).backward()
        optimizer.set_batch_patients(RECORD_PATIENT, n_patients)
        assert optimizer.pre_step()
    parameters = list(model.parameters())
    assert len(parameters) == len(expected)
    for param, clipped_sum in zip(parameters, expected):
        # Opacus divides the clipped sum by the expected batch size: patients.
        torch.testing.assert_close(param.grad * n_patients, clipped_sum, rtol=1e-7, atol=1e-10)


def test_without_a_patient_index_the_optimizer_clips_records():
    model, inputs, labels = make_batch("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = wrap_model(model, "hooks", batch_first=True, loss_reduction="mean")
        optimizer = PatientDPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=0.1),
            noise_multiplier=0.0,
            max_grad_norm=1e-3,
            expected_batch_size=len(labels),
        )
        F.cross_entropy(wrapped(inputs), labels).backward()
        optimizer.pre_step()
    # Every record clipped to C: the sum of 10 record gradients has norm close to 10 C at most.
    total = torch.cat([p.grad.flatten() for p in model.parameters()]).norm() * len(labels)
    assert 1e-3 < total <= 10 * 1e-3 + 1e-9


def test_patient_plan_counts_patients():
    privacy = PrivacyConfig(epsilon=3.0, unit="patient")
    plan = PrivacyPlan.for_training_set(privacy, n_units=30_000, batch_size=2_900, epochs=2)
    assert plan.unit == "patient" and plan.n_units == 30_000
    assert plan.sample_rate == 1 / 11 and plan.steps == 22
    assert plan.delta == 1e-6  # the power of ten ≤ 1 / (10 · 30,000 patients)
    spend = plan.spend()
    assert spend.unit == "patient" and spend.n_units == 30_000 and 2.9 < spend.epsilon <= 3.0


def test_default_unit_is_record_and_equal_counts_give_equal_plans():
    record = PrivacyPlan.for_training_set(
        PrivacyConfig(epsilon=3.0, accountant="rdp"), n_units=300, batch_size=40, epochs=2
    )
    patient = PrivacyPlan.for_training_set(
        PrivacyConfig(epsilon=3.0, accountant="rdp", unit="patient"),
        n_units=300,
        batch_size=40,
        epochs=2,
    )
    assert record.unit == "record" and patient.unit == "patient"
    # 300 patients of one record each are 300 records: the same (σ, q, steps, δ) and ε.
    assert patient.accountant_history() == record.accountant_history()
    assert patient.delta == record.delta and patient.spend().epsilon == record.spend().epsilon


def test_bad_patient_level_input():
    for cap in (0, -1):
        with pytest.raises(ConfigError, match=r"max_records_per_patient must be >= 1 record"):
            PrivacyConfig(unit="patient", max_records_per_patient=cap)
    with pytest.raises(ConfigError, match=r"train\.batch_size=11"):
        PrivacyPlan.for_training_set(
            PrivacyConfig(unit="patient"), n_units=10, batch_size=11, epochs=1
        )
    for mode in ("ghost", "ew"):
        with pytest.raises(ConfigError, match=r"\['auto', 'hooks', 'functorch'\]"):
            PrivacyConfig(unit="patient", grad_sample_mode=mode)
    with pytest.raises(ConfigError, match=r"privacy\.unit must be one of"):
        PrivacyConfig(unit="visit")
    with pytest.raises(ConfigError, match="training patients"):
        PrivacyConfig(unit="patient", delta=0.2).resolve_delta(10, unit="patient")
