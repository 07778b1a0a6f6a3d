"""DP-correctness suite: the white-box audit never refutes a correct run and catches broken ones.

Every run trains the default MLP on 1000 records for 50 steps at q = 0.1 through `fit` and the real
Opacus optimiser, with 4000 Dirac gradient canaries (`dptrain.audit.whitebox`). Each bound holds
with confidence 0.99 (the significance is split over its three tests: the likelihood ratio at its
planned threshold, the same score at the best of a grid, the step differences), so a correct
implementation fails one of the three ε checks with probability at most 3 %, in fact far less: at
these sizes the bounds sit at a fifth to a third of ε (measured: 0.19 of 1, 1.31 of 4, 2.07 of 8;
the plan says 0.10, 1.02 and 2.05 are reachable with 4000 canaries). Runs are seeded, so the
outcome is the same on every machine.

The broken variants are test-only subclasses of the real optimiser (or a change to the real
sampler), each claiming ε = 1; the audit must put its lower bound above 1.
"""

import numpy as np
import pytest
import torch

from dptrain.audit.whitebox import whitebox_audit
from dptrain.data.cohort import Cohort
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

CONFIDENCE = 0.99
TRAIN = TrainConfig(epochs=5, batch_size=100, lr=0.01, class_weights="none", device="cpu")
NUM_CANARIES = 4000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_cohort() -> Cohort:
    """1000 one-record patients, 8 features, a label that depends on the first."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 8)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(size=1000) > 0).astype(np.int64)
    return Cohort.from_records(
        name="toy", features=features, labels=labels, patient_ids=np.arange(1000)
    )


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return small_cohort()


def audit(cohort, *, epsilon, tamper=None, seed=0):
    return whitebox_audit(
        cohort=cohort,
        model_factory=MLPConfig(),
        privacy=PrivacyConfig(epsilon=epsilon, unit="record"),
        train=TRAIN,
        seed=seed,
        num_canaries=NUM_CANARIES,
        confidence=CONFIDENCE,
        tamper=tamper,
    )


@pytest.fixture(scope="module")
def correct_runs(cohort):
    torch.set_num_threads(1)
    return {epsilon: audit(cohort, epsilon=epsilon) for epsilon in (1.0, 4.0, 8.0)}


@pytest.mark.parametrize("epsilon", [1.0, 4.0, 8.0])
def test_a_correct_run_is_never_refuted(correct_runs, epsilon):
    result = correct_runs[epsilon]
    assert result.epsilon_accountant == pytest.approx(epsilon, abs=0.05)
    assert result.epsilon_lower_bound <= result.epsilon_accountant
    assert not result.violates_claim
    # What the canaries can show under the plan is itself below the claim.
    assert 0 < result.epsilon_reachable < result.epsilon_accountant
    # The audit has power: the bound is far from 0 where ε is large, and the planned test gets
    # near what the plan says these canaries reach.
    if epsilon >= 4:
        assert result.epsilon_lower_bound > 0.15 * epsilon
        planned = result.likelihood_ratio.clopper_pearson
        assert planned.correction == "planned" and planned.epsilon > 0.5 * result.epsilon_reachable


@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_canary_steps_follow_the_planned_gaussians(correct_runs, epsilon):
    result = correct_runs[epsilon]
    sigma = result.noise_multiplier
    n_in = int(result.trace.sampled.sum())
    # N(1, σ²) on sampled steps, N(0, σ²) elsewhere; 6 standard errors of slack.
    assert result.in_step_mean == pytest.approx(1.0, abs=6 * sigma / np.sqrt(n_in))
    assert result.out_step_mean == pytest.approx(0.0, abs=6 * sigma / np.sqrt(100_000))
    assert result.in_step_std == pytest.approx(sigma, rel=0.05)
    assert result.out_step_std == pytest.approx(sigma, rel=0.02)
    # Canaries are sampled at the planned q, and only when included.
    assert not result.trace.sampled[~result.trace.included].any()
    rate = result.trace.sampled[result.trace.included].mean()
    assert rate == pytest.approx(result.sample_rate, abs=0.01)


def noise_off(parts) -> None:
    class NoiseOff(type(parts.optimizer)):
        def add_noise(self):
            sigma, self.noise_multiplier = self.noise_multiplier, 0.0
            try:
                super().add_noise()
            finally:
                self.noise_multiplier = sigma

    parts.optimizer.__class__ = NoiseOff


def clipping_off(parts) -> None:
    class ClippingOff(type(parts.optimizer)):
        def clip_and_accumulate(self):
            clip, self.max_grad_norm = self.max_grad_norm, float("inf")
            try:
                super().clip_and_accumulate()
            finally:
                self.max_grad_norm = clip

    parts.optimizer.__class__ = ClippingOff


def sampler_draws_more(parts) -> None:
    """σ was calibrated for q; the sampler draws 4q (Opacus #813: a sampler changing q)."""
    parts.data_loader.batch_sampler.sample_rate *= 4


def noise_for_the_mean(parts) -> None:
    """Noise of std σC meant for the mean is added to the sum: divided by the batch size."""

    class NoiseForTheMean(type(parts.optimizer)):
        def add_noise(self):
            sigma = self.noise_multiplier
            self.noise_multiplier = sigma / self.expected_batch_size
            try:
                super().add_noise()
            finally:
                self.noise_multiplier = sigma

    parts.optimizer.__class__ = NoiseForTheMean


def noise_seed_reused(parts) -> None:
    start = parts.optimizer.generator.get_state()

    class NoiseSeedReused(type(parts.optimizer)):
        def add_noise(self):
            self.generator.set_state(start)
            super().add_noise()

    parts.optimizer.__class__ = NoiseSeedReused


BROKEN = [noise_off, clipping_off, sampler_draws_more, noise_for_the_mean, noise_seed_reused]


@pytest.mark.parametrize("tamper", BROKEN, ids=lambda tamper: tamper.__name__)
def test_a_broken_implementation_is_caught(cohort, tamper):
    result = audit(cohort, epsilon=1.0, tamper=tamper)
    assert result.epsilon_accountant == pytest.approx(1.0, abs=0.05)
    assert result.violates_claim, f"lower bound {result.epsilon_lower_bound:.2f} <= 1"
