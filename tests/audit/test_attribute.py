"""Attribute inference: a planted advantage is recovered, a memorising model is caught."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import norm

from dptrain.audit.attribute import (
    attribute_inference,
    attribute_probes,
    guess_correct,
    probes_key,
)
from dptrain.audit.config import AuditConfig
from dptrain.audit.run import run_audit
from dptrain.audit.store import ModelStore
from dptrain.data.cohort import Cohort
from dptrain.data.splits import balanced_membership_masks
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.reporting.attacker_markdown import attribute_inference_section
from dptrain.reporting.audit_markdown import audit_sections
from dptrain.reporting.summary import attribute_inference_metrics
from dptrain.training.config import TrainConfig


def toy_cohort(n_patients: int = 80, seed: int = 3) -> Cohort:
    """Gaussian features, a binary ``secret``, a three-level one-hot ``site``, random labels."""
    rng = np.random.default_rng(seed)
    secret = (rng.random(n_patients) < 0.5).astype(np.float32)
    site = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n_patients)]
    features = np.column_stack([rng.normal(size=(n_patients, 6)), secret, site]).astype(np.float32)
    return Cohort.from_records(
        name="toy",
        features=features,
        labels=rng.integers(0, 2, n_patients),
        patient_ids=np.array([f"p{i}" for i in range(n_patients)]),
        feature_names=(*[f"x{i}" for i in range(6)], "secret", "site=a", "site=b", "site=c"),
    )


def test_probes_resolve_binary_and_one_hot_columns_and_refuse_the_rest():
    cohort = toy_cohort()
    secret, site = attribute_probes(cohort, ["secret", "site"])
    assert secret.columns == (6,) and secret.levels == ("0", "1")
    assert site.columns == (7, 8, 9) and site.levels == ("a", "b", "c")
    np.testing.assert_array_equal(secret.true_level(cohort.features), cohort.features[:, 6])
    np.testing.assert_array_equal(
        site.true_level(cohort.features), cohort.features[:, 7:].argmax(1)
    )
    changed = site.with_level(cohort.features, 2)
    assert (changed[:, 9] == 1).all() and (changed[:, 7:9] == 0).all()
    np.testing.assert_array_equal(changed[:, :7], cohort.features[:, :7])  # nothing else moves
    with pytest.raises(ConfigError, match=r"'x0' has 80 distinct values"):
        attribute_probes(cohort, ["x0"])
    with pytest.raises(ConfigError, match=r"'hiv' is not an input feature"):
        attribute_probes(cohort, ["hiv"])
    assert probes_key([]) == "" and probes_key([secret]) != probes_key([site])


def test_ties_count_as_a_coin_flip_and_missing_values_are_skipped():
    signals = np.array([[[1.0, 0.0, 2.0, 5.0]], [[1.0, 3.0, 1.0, 5.0]]]).transpose(1, 0, 2)
    correct = guess_correct(signals, np.array([0, 0, 1, -1]))
    assert correct[0, :3].tolist() == [0.5, 0.0, 0.0] and np.isnan(correct[0, 3])


def test_a_planted_member_advantage_is_recovered_within_its_interval():
    """Members: the true value wins by N(1, 1) in φ (accuracy Φ(1)); non-members: N(0, 1)."""
    n_patients, num_models = 2000, 16
    rng = np.random.default_rng(0)
    membership = balanced_membership_masks(
        patient_labels=np.zeros(n_patients, int), num_models=num_models, seed=0
    )
    true_level = rng.integers(0, 2, n_patients)
    margin = membership * 1.0 + rng.normal(size=membership.shape)  # φ(true) − φ(other)
    signals = np.zeros((num_models, 2, n_patients))
    rows = np.arange(n_patients)
    signals[:, true_level, rows] = margin
    result = attribute_inference(
        probe=attribute_probes(
            Cohort.from_records(
                name="t",
                features=true_level[:, None].astype(np.float32),
                labels=np.zeros(n_patients, int),
                patient_ids=rows.astype(str),
                feature_names=("secret",),
            ),
            ["secret"],
        )[0],
        signals=signals,
        true_level=true_level,
        membership=membership,
        record_patient=rows,
        rng=np.random.default_rng(1),
    )
    overall = result.overall
    planted = norm.cdf(1.0) - 0.5
    assert overall.advantage_interval[0] <= planted <= overall.advantage_interval[1]
    assert overall.member_interval[0] <= norm.cdf(1.0) <= overall.member_interval[1]
    assert overall.nonmember_interval[0] <= 0.5 <= overall.nonmember_interval[1]
    assert overall.advantage_interval[1] - overall.advantage_interval[0] < 0.05
    assert [row.true_value for row in result.rows] == ["all", "0", "1"]
    assert sum(row.n_patients for row in result.rows[1:]) == n_patients
    assert 0.45 < result.majority_accuracy < 0.55


MEMORISE = TrainConfig(epochs=60, batch_size=16, lr=0.01, class_weights="none")


@pytest.fixture(scope="module")
def memorising_audit():
    cohort = toy_cohort()
    audit = AuditConfig(
        num_models=8,
        workers=1,
        rmia_num_population=50,
        null_repeats=3,
        sensitive_attributes=["secret", "site"],
    )
    return cohort, run_audit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[128, 128]),
        privacy=PrivacyConfig(mode="none"),
        train=MEMORISE,
        audit=audit,
        seed=0,
    )


@pytest.mark.slow
def test_a_memorising_model_reveals_its_members_attribute(memorising_audit):
    _, result = memorising_audit
    secret, site = result.attribute_inference
    assert secret.attribute == "secret" and site.levels == ("a", "b", "c")
    assert secret.overall.advantage_interval[0] > 0  # interval excludes 0
    assert secret.overall.member_accuracy > 0.7
    assert site.overall.advantage_interval[0] > 0


@pytest.mark.slow
def test_attribute_signals_leave_the_membership_signals_alone(memorising_audit, tmp_path):
    cohort, with_attributes = memorising_audit
    plain = run_audit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[128, 128]),
        privacy=PrivacyConfig(mode="none"),
        train=MEMORISE,
        audit=AuditConfig(num_models=4, workers=1, rmia_num_population=50, null_repeats=1),
        seed=0,
        output_dir=tmp_path,
    )
    assert plain.attribute_inference == ()
    np.testing.assert_array_equal(plain.signals, with_attributes.signals[:4])
    # a store saved without attribute signals is loadable as before, and retrained when asked
    store = ModelStore.in_run_dir(tmp_path)
    with np.load(store.path(0)) as saved:
        fingerprint = str(saved["fingerprint"])
        assert "attribute_signals" not in saved.files
    assert store.load(0, fingerprint=fingerprint) is not None
    key = probes_key(attribute_probes(cohort, ["secret"]))
    assert store.load(0, fingerprint=fingerprint, attribute_key=key) is None


@pytest.mark.slow
def test_a_strongly_private_model_shows_no_member_advantage():
    result = run_audit(
        cohort=toy_cohort(),
        model_factory=MLPConfig(hidden=[128, 128]),
        privacy=PrivacyConfig(epsilon=0.5, delta=1e-4, unit="record"),
        train=MEMORISE,
        audit=AuditConfig(
            num_models=8,
            workers=1,
            rmia_num_population=50,
            null_repeats=3,
            sensitive_attributes=["secret"],
        ),
        seed=0,
    )
    lower, upper = result.attribute_inference[0].overall.advantage_interval
    assert lower < 0 < upper and upper < 0.15


@pytest.mark.slow
def test_report_and_summary_show_the_attribute_table(memorising_audit):
    _, result = memorising_audit
    report = SimpleNamespace(audit=result, privacy=result.model_privacy, dp_audits=())
    text = attribute_inference_section(result)
    assert text.startswith("## Attribute inference") and "Members are the positive class" in text
    assert "**secret**: member advantage" in text and "reveal it for their own patients" in text
    assert "| secret | = 1 |" in text and "| site | = c |" in text
    assert any(s.startswith("## Attribute inference") for s in audit_sections(report, images={}))
    metrics = attribute_inference_metrics(result)
    assert metrics["attribute/secret/advantage_lower"] > 0
    assert metrics["attribute/secret/advantage"] == result.attribute_inference[0].overall.advantage
