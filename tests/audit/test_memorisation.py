"""Memorised vs predictable: a planted memorised subgroup and a planted predictable one."""

from types import SimpleNamespace

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.memorisation import (
    MEMORISED,
    NOT_EXPOSED,
    PREDICTABLE,
    memorisation_split,
    out_model_confidence,
    patient_baseline,
)
from dptrain.audit.run import analyse_signals
from dptrain.data.cohort import Cohort
from dptrain.data.splits import balanced_membership_masks
from dptrain.errors import ConfigError
from dptrain.reporting.attacker_markdown import memorisation_section
from dptrain.reporting.audit_markdown import audit_sections
from dptrain.reporting.summary import memorisation_metrics

from .simulate import non_private_spend

K = 16
GROUPS = {"outlier": 20, "predictable": 20, "typical": 160}


def simulated_audit():
    """Signals of three planted groups: the OUT level sets p̄_OUT, the IN shift the AUC.

    outlier: OUT models get them wrong (φ ≈ −1.5, p ≈ 0.18), IN models fit them (φ ≈ 3);
    predictable: OUT models already confident (φ ≈ 4, p ≈ 0.98), IN models more so (φ ≈ 6.5);
    typical: no membership effect.
    """
    group = np.repeat(list(GROUPS), list(GROUPS.values()))
    ids = np.array([f"p{i:03d}" for i in range(len(group))])
    cohort = Cohort.from_records(
        name="planted",
        features=np.zeros((len(ids), 2), np.float32),
        labels=(np.arange(len(ids)) % 2).astype(np.int64),
        patient_ids=ids,
        attributes={"group": dict(zip(ids, group))},
    )
    membership = balanced_membership_masks(
        patient_labels=cohort.patient_labels, num_models=K, seed=0
    )
    members = cohort.record_mask(membership)
    rng = np.random.default_rng(1)
    out_level = np.select([group == "outlier", group == "predictable"], [-1.5, 4.0], 0.5)
    shift = np.select([group == "outlier", group == "predictable"], [4.5, 2.5], 0.0)
    signals = out_level + shift * members + rng.normal(0.0, 0.4, members.shape)
    config = AuditConfig(num_models=K, rmia_num_population=50, null_repeats=10)
    spend = non_private_spend(n_units=len(ids))
    result = analyse_signals(
        signals=signals,
        membership=membership,
        cohort=cohort,
        model_privacy=spend,
        audit=config,
        seed=0,
    )
    return SimpleNamespace(audit=result, privacy=spend, dp_audits=()), group


@pytest.fixture(scope="module")
def planted():
    return simulated_audit()


def row(split, value):
    return next(r for r in split.rows if r.value == value)


def test_each_planted_group_lands_in_its_own_column(planted):
    report, group = planted
    split = report.audit.memorisation
    outliers, predictable, typical = (row(split, v) for v in ("outlier", "predictable", "typical"))
    assert outliers.memorised[0] == GROUPS["outlier"] and outliers.predictable_exposed[0] == 0
    assert predictable.predictable_exposed[0] == GROUPS["predictable"]
    assert predictable.memorised[0] == 0 and predictable.predictable == GROUPS["predictable"]
    # the typical patients' chance exposures are memorised-or-not at random, within the floor
    assert typical.memorised[0] <= typical.memorised_floor_upper[0] + 2
    assert outliers.memorised[0] > outliers.memorised_floor_upper[0]
    assert split.cohort.memorised[0] == sum(
        r.memorised[0] for r in (outliers, predictable, typical)
    )
    assert set(split.category[group == "outlier"]) == {MEMORISED}
    assert set(split.category[group == "predictable"]) == {PREDICTABLE}
    assert NOT_EXPOSED in set(split.category[group == "typical"])
    lower, upper = outliers.memorised_interval[0]
    assert lower < 1.0 == upper  # all 20 of 20: the interval reaches 1 and is not a point
    assert split.cohort.fdr_predictable >= GROUPS["predictable"] - 2


def test_report_never_counts_predictable_patients_as_leaks(planted):
    report, _ = planted
    text = memorisation_section(report.audit)
    assert text.startswith("## Memorisation or generalisation")
    assert "not counted as membership leaks" in text
    table_row = next(line for line in text.splitlines() if line.startswith("| group | predictable"))
    cells = [cell.strip() for cell in table_row.strip("|").split("|")]
    memorised, predictable_exposed = cells[6], cells[8]
    assert memorised.startswith("0 (0.0%") and predictable_exposed.startswith("20 (100.0%")
    outlier_row = next(line for line in text.splitlines() if line.startswith("| group | outlier"))
    assert [cell.strip() for cell in outlier_row.strip("|").split("|")][6].startswith("20 (")
    assert any(s.startswith("## Memorisation") for s in audit_sections(report, images={}))


def test_summary_carries_the_split(planted):
    report, _ = planted
    metrics = memorisation_metrics(report.audit)
    assert metrics["subgroup/group=outlier/memorised_above_0.8"] == GROUPS["outlier"]
    assert metrics["subgroup/group=predictable/memorised_above_0.8"] == 0
    assert metrics["audit/memorised_floor_above_0.8"] < GROUPS["outlier"]


def test_baseline_is_the_most_exposed_records_or_the_mean():
    confidence = np.array([0.9, 0.2, 0.6])
    auc = np.array([0.5, 0.95, 0.7])
    patients = np.array([0, 0, 1])
    assert patient_baseline(confidence, auc, patients, n_patients=2, how="max").tolist() == [
        0.2,
        0.6,
    ]
    assert patient_baseline(confidence, auc, patients, n_patients=2, how="mean") == pytest.approx(
        [0.55, 0.6]
    )


def test_out_confidence_matches_a_loop():
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(6, 5))
    members = rng.random((6, 5)) < 0.5
    members[0] = False  # every record has an OUT model
    expected = [
        np.mean(1 / (1 + np.exp(-signals[~members[:, r], r]))) for r in range(signals.shape[1])
    ]
    assert out_model_confidence(signals, members) == pytest.approx(expected)


def test_tau_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"predictable_confidence must be in \(0\.5, 1\)"):
        AuditConfig(predictable_confidence=0.4)
    masks = balanced_membership_masks(patient_labels=np.zeros(4, int), num_models=2, seed=0)
    with pytest.raises(ConfigError, match=r"got 1\.0"):
        memorisation_split(
            signals=np.zeros((2, 4)),
            membership=masks,
            record_patient=np.arange(4),
            patient_labels=np.zeros(4, int),
            record_auc=np.full(4, 0.5),
            patient_auc=np.full(4, 0.5),
            attributes={},
            thresholds=(0.8,),
            predictable_confidence=1.0,
        )
