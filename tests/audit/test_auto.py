"""`audit.num_models=auto`: the audit grows by rounds and stops by its rule, saying why."""

import itertools

import numpy as np
import pytest

from dptrain.audit.auto import StoppingRule, grow_audit
from dptrain.audit.config import AuditConfig
from dptrain.data.cohort import Cohort
from dptrain.data.splits import balanced_membership_masks
from dptrain.errors import ConfigError

N_PATIENTS = 200


@pytest.fixture(scope="module")
def cohort():
    return Cohort.from_records(
        name="planted",
        features=np.zeros((N_PATIENTS, 1), np.float32),
        labels=np.arange(N_PATIENTS) % 2,
        patient_ids=np.arange(N_PATIENTS),
    )


class Planted:
    """Signals of up to `max_models` models: noise plus a per-patient effect when IN."""

    def __init__(self, cohort, effect, *, max_models=128, seed=0, seconds_per_model=0.0):
        self.membership = balanced_membership_masks(
            patient_labels=cohort.patient_labels, num_models=max_models, seed=seed
        )
        rng = np.random.default_rng(seed)
        noise = rng.normal(size=self.membership.shape)
        self.signals = noise + effect * cohort.record_mask(self.membership)
        self.calls: list[range] = []
        self.now, self.seconds_per_model = 0.0, seconds_per_model

    def train(self, indices: range) -> np.ndarray:
        self.calls.append(indices)
        self.now += self.seconds_per_model * len(indices)
        return self.signals[indices.start : indices.stop]

    def grow(self, cohort, **rule):
        options = {"round_models": 8, "max_models": 128, "max_minutes": 60.0, "tolerance": 0.02}
        return grow_audit(
            train_models=self.train,
            membership=self.membership,
            cohort=cohort,
            rule=StoppingRule(**{**options, **rule}),
            fdr=0.05,
            aggregation="max",
            seed=0,
            clock=lambda: self.now,
        )


def test_masks_grown_to_a_larger_k_keep_their_first_rows():
    labels = np.random.default_rng(1).integers(0, 3, 101)
    largest = balanced_membership_masks(patient_labels=labels, num_models=64, seed=4)
    for k in (2, 8, 16, 30):
        smaller = balanced_membership_masks(patient_labels=labels, num_models=k, seed=4)
        np.testing.assert_array_equal(smaller, largest[:k])


def test_reliability_that_stabilises_stops_the_audit_early(cohort):
    # Patients leak by very different amounts: the ranking is reliable after a few rounds.
    effect = np.linspace(0, 3, N_PATIENTS)
    planted = Planted(cohort, effect)
    signals, rounds, reason = planted.grow(cohort, tolerance=0.02)
    assert reason.startswith("reliability stable")
    assert len(rounds) >= 2 and rounds[-1].num_models < 128
    assert abs(rounds[-1].reliability - rounds[-2].reliability) < 0.02
    earlier = itertools.pairwise(rounds[:-1])
    assert all(abs(a.reliability - b.reliability) >= 0.02 for a, b in earlier)
    # rounds take consecutive blocks of models, and the signals are theirs, in order
    assert [(r.start, r.stop) for r in planted.calls] == [
        (8 * i, 8 * (i + 1)) for i in range(len(rounds))
    ]
    np.testing.assert_array_equal(signals, planted.signals[: rounds[-1].num_models])


def test_a_stable_answer_below_the_minimum_k_does_not_stop_the_audit(cohort):
    planted = Planted(cohort, np.linspace(0, 3, N_PATIENTS))
    _, early, _ = planted.grow(cohort, tolerance=0.02)
    _, rounds, reason = Planted(cohort, np.linspace(0, 3, N_PATIENTS)).grow(
        cohort, tolerance=0.02, min_models=early[-1].num_models + 16
    )
    assert reason.startswith("reliability stable")
    assert rounds[-1].num_models >= early[-1].num_models + 16


def test_an_fdr_list_that_stops_changing_stops_the_audit(cohort):
    leaky = np.arange(N_PATIENTS) < 10  # ten patients leak strongly, the rest not at all
    planted = Planted(cohort, 6.0 * leaky)
    _, rounds, reason = planted.grow(cohort, tolerance=0.0)  # reliability can never stop it
    assert reason.startswith("FDR list stable: the same 10 patients")
    np.testing.assert_array_equal(rounds[-1].exposed, leaky)
    np.testing.assert_array_equal(rounds[-2].exposed, leaky)


def test_without_a_stable_answer_the_model_budget_stops_it(cohort):
    planted = Planted(cohort, np.zeros(N_PATIENTS), max_models=40)
    _, rounds, reason = planted.grow(cohort, tolerance=0.0, max_models=40)
    assert reason == "model budget: K = 40 reached audit.max_models"
    assert [r.num_models for r in rounds] == [8, 16, 24, 32, 40]


def test_a_round_that_would_overrun_the_time_budget_is_not_started(cohort):
    # 12.5 s a model: rounds end at 100, 200, 300 s; a fourth would end at 400 s > 5 min.
    planted = Planted(cohort, np.zeros(N_PATIENTS), seconds_per_model=12.5)
    _, rounds, reason = planted.grow(cohort, tolerance=0.0, max_minutes=5.0)
    assert [r.num_models for r in rounds] == [8, 16, 24]
    assert reason.startswith("time budget: 5.0 min spent")
    assert "past audit.max_minutes = 5" in reason


@pytest.mark.parametrize(
    ("value", "parsed", "auto"), [("auto", "auto", True), (64, 64, False), ("32", 32, False)]
)
def test_num_models_reads_an_even_number_or_auto(value, parsed, auto):
    config = AuditConfig(num_models=value)
    assert config.num_models == parsed and config.auto_models is auto


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_models": "many"}, "even number >= 2 or auto, got 'many'"),
        ({"num_models": 7}, "even number >= 2 or auto, got 7"),
        ({"auto_round_models": 5}, "auto_round_models must be an even number >= 2, got 5"),
        ({"max_models": 8, "auto_round_models": 16}, r"auto_round_models \(16\) must be <="),
        ({"max_minutes": 0}, "max_minutes must be > 0, got 0"),
    ],
)
def test_bad_growth_settings_are_rejected_with_the_value(options, message):
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**options)
