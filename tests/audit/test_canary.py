import numpy as np
import pytest
import torch
from scipy.special import softmax

from dptrain.audit.auditor import gdp_epsilon
from dptrain.audit.canary import (
    canary_audit,
    cohort_with_canaries,
    label_margins,
    make_canaries,
)
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

# Memorisation recipe: a wide MLP, many small steps over a small cohort.
MEMORISE = TrainConfig(epochs=30, batch_size=50, lr=0.01, class_weights="none", device="cpu")


def toy_cohort(n_patients: int = 1000, seed: int = 0) -> Cohort:
    rng = np.random.default_rng(seed)
    records = rng.integers(1, 3, size=n_patients)
    patient_ids = np.repeat(np.arange(n_patients), records)
    features = rng.normal(size=(len(patient_ids), 8)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(size=len(patient_ids)) > 0).astype(np.int64)
    sex = {p: "F" if p % 3 else "M" for p in range(n_patients)}
    return Cohort.from_records(
        name="toy",
        features=features,
        labels=labels,
        patient_ids=patient_ids,
        attributes={"sex": sex},
    )


@pytest.mark.parametrize("kind", ["mislabel", "ood", "both"])
def test_canaries_are_reproducible_and_balanced(kind):
    cohort = toy_cohort()
    first, second = (
        make_canaries(cohort, num_canaries=400, kind=kind, rng=np.random.default_rng(5))
        for _ in range(2)
    )
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.included, second.included)
    assert 150 < first.included.sum() < 250  # Binomial(400, ½): ±5 standard deviations
    assert first.features.dtype == np.float32 and first.labels.shape == (400,)


def test_mislabelled_canaries_carry_a_wrong_label_and_their_patients_leave_training():
    cohort = toy_cohort()
    canaries = make_canaries(
        cohort, num_canaries=100, kind="mislabel", rng=np.random.default_rng(1)
    )
    for feature, label, patient in zip(
        canaries.features, canaries.labels, canaries.source_patients
    ):
        records = np.flatnonzero(cohort.record_patient == patient)
        match = records[(cohort.features[records] == feature).all(axis=1)]
        assert match.size == 1 and cohort.labels[match[0]] != label
    training = cohort_with_canaries(cohort, canaries)
    assert not np.isin(cohort.patients[canaries.source_patients], training.patients).any()
    is_canary = np.char.startswith(training.patients.astype(str), "canary-")
    assert is_canary.sum() == canaries.included.sum()
    assert (training.attributes["sex"][is_canary] == "canary").all()
    assert training.n_records == (
        cohort.n_records
        - np.isin(cohort.record_patient, canaries.source_patients).sum()
        + canaries.included.sum()
    )


def test_ood_canaries_lie_outside_the_data():
    cohort = toy_cohort()
    canaries = make_canaries(cohort, num_canaries=200, kind="ood", rng=np.random.default_rng(2))
    assert canaries.source_patients.size == 0
    assert np.abs(canaries.features).mean() > 2 * np.abs(cohort.features).mean()


def test_canary_options_are_checked():
    cohort = toy_cohort(n_patients=10)
    with pytest.raises(ConfigError, match=r"canary kind must be one of"):
        make_canaries(cohort, num_canaries=4, kind="typo", rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"at most half the 10 patients, got 8"):
        make_canaries(cohort, num_canaries=8, kind="mislabel", rng=np.random.default_rng(0))


def test_label_margins_match_a_naive_loop():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, size=50)
    probabilities = softmax(logits, axis=1)
    expected = [
        np.log(probabilities[i, y]) - np.log1p(-probabilities[i, y]) for i, y in enumerate(labels)
    ]
    np.testing.assert_allclose(label_margins(logits, labels), expected, rtol=1e-9)
    multilabel = rng.integers(0, 2, size=(50, 4))
    expected = [sum(v if y else -v for v, y in zip(row, ys)) for row, ys in zip(logits, multilabel)]
    np.testing.assert_allclose(label_margins(logits, multilabel), expected)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def audit(privacy: PrivacyConfig):
    return canary_audit(
        cohort=toy_cohort(),
        model_factory=MLPConfig(hidden=[128, 128]),
        privacy=privacy,
        train=MEMORISE,
        seed=0,
        num_canaries=250,
    )


@pytest.mark.slow
def test_a_non_private_model_memorises_its_canaries(one_thread):
    result = audit(PrivacyConfig(mode="none"))
    assert result.epsilon_accountant == np.inf
    assert result.epsilon_lower_bound > 0.75
    assert result.mu_fdp_one_run == result.summary.fdp_one_run.mu > 0
    assert result.epsilon_fdp_one_run == pytest.approx(gdp_epsilon(result.mu_fdp_one_run, 1e-5))
    assert result.summary.auroc > 0.75
    assert result.num_guesses + result.num_abstentions == result.num_canaries == 250
    assert result.num_correct <= result.num_guesses


@pytest.mark.slow
def test_a_private_model_stays_under_its_epsilon(one_thread):
    # Valid with probability ≥ 95 %; measured bound 0.0 at this seed.
    result = audit(PrivacyConfig(epsilon=1.0, unit="record"))
    assert result.epsilon_accountant == pytest.approx(1.0, abs=0.05)
    assert result.epsilon_lower_bound < 1.0
    assert result.epsilon_fdp_one_run < 1.0  # μ-GDP ε; DP-SGD's curve is near Gaussian
    assert not result.violates_claim
