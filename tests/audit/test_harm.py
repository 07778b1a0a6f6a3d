"""Harm weighting: severity × exposed share ranks the subgroups, and names the exposed tail."""

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.harm import harm_ranking, severity_weight
from dptrain.errors import ConfigError

N = 200


def planted(severity: dict) -> object:
    """A 40-patient ``hiv`` group with half exposed; an unrated ``site`` with more exposure.

    Unweighted, site A (60 % exposed) would lead; weighted, the high-severity group (50 % × 3)
    must rank first.
    """
    hiv = np.array(["positive"] * 40 + ["negative"] * 160)
    site = np.array(["A"] * 50 + ["B"] * 150)
    auc = np.full(N, 0.5)
    auc[:20] = 0.95  # half of the hiv-positive patients (all of them at site A)
    auc[40:50] = 0.9  # 10 more at site A: 30 / 50 = 60 % of site A exposed
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    return harm_ranking(
        patient_auc=auc,
        attributes={"hiv": hiv, "site": site},
        patient_labels=labels,
        class_names=("alive", "dead"),
        severity=severity,
        value_names={"hiv": {"1": "positive", "0": "negative"}},
        threshold=0.8,
        confidence=0.95,
    )


def test_a_high_severity_group_with_high_exposure_ranks_first_and_carries_the_tail():
    ranking = planted({"hiv": {"1": "high"}})
    first = ranking.rows[0]
    assert (first.attribute, first.value, first.severity) == ("hiv", "positive", "high")
    assert first.weighted == pytest.approx(3 * 20 / 40)
    np.testing.assert_allclose(first.weighted_interval, 3 * first.exposed_interval)
    assert first.exposed_interval[0] < 0.5 < first.exposed_interval[1]
    assert ranking.rows[1].attribute == "site" and ranking.rows[1].value == "A"
    assert [(row.attribute, row.value) for row in ranking.tail_groups] == [("hiv", "positive")]
    assert first.share_of_exposed == pytest.approx(20 / 30)
    assert ranking.exposed_patients == 30 and ranking.cohort_share == pytest.approx(0.15)


def test_without_a_rating_exposure_alone_ranks_and_no_group_is_the_tail():
    ranking = planted({"label": {"dead": "low"}})
    assert (ranking.rows[0].attribute, ranking.rows[0].value) == ("site", "A")
    assert ranking.tail_groups == ()
    assert {row.value for row in ranking.rows if row.attribute == "label"} == {"alive", "dead"}


def test_label_severity_by_class_index_and_bad_ratings_are_refused():
    ranking = planted({"label": {"1": "medium"}})
    dead = next(row for row in ranking.rows if row.value == "dead")
    assert dead.severity == "medium" and dead.rated
    with pytest.raises(ConfigError, match=r"'smoker' is not a subgroup attribute"):
        planted({"smoker": {"1": "high"}})
    with pytest.raises(ConfigError, match=r"value '2' is not one of its subgroups"):
        planted({"hiv": {"2": "high"}})
    with pytest.raises(ConfigError, match=r"severity must be one of"):
        severity_weight("extreme")
    with pytest.raises(ConfigError, match=r"audit\.severity\.hiv\.1 must be one of"):
        AuditConfig(severity={"hiv": {"1": "extreme"}})


def test_exposed_patients_are_ranked_by_severity_times_advantage_and_only_fdr_listed_ones():
    hiv = np.array(["positive"] * 40 + ["negative"] * 160)
    auc = np.full(N, 0.5)
    lower = np.full(N, 0.4)
    listed = np.zeros(N, bool)
    auc[[0, 1, 100, 101]] = [0.9, 0.8, 0.95, 0.9]
    lower[[0, 1, 100, 101]] = [0.8, 0.7, 0.9, 0.85]
    listed[[0, 1, 100, 101]] = True
    auc[150], lower[150] = 0.99, 0.6  # high AUC, not established at the FDR: never ranked
    ranking = harm_ranking(
        patient_auc=auc,
        attributes={"hiv": hiv},
        patient_labels=np.zeros(N, int),
        class_names=("alive", "dead"),
        severity={"hiv": {"1": "high"}},
        value_names={"hiv": {"1": "positive"}},
        threshold=0.8,
        confidence=0.95,
        patient_lower_bound=lower,
        patient_exposed=listed,
    )
    # hiv-positive: 3 × (2·0.8 − 1) = 1.8 and 3 × 0.4 = 1.2; unrated: 0.8 and 0.7.
    assert [p.score for p in ranking.top_patients] == pytest.approx([1.8, 1.2, 0.8, 0.7])
    assert [p.rated_as for p in ranking.top_patients] == ["hiv = positive"] * 2 + [""] * 2
    assert [p.severity for p in ranking.top_patients] == ["high", "high", "low", "low"]
    assert ranking.patient_rank[[0, 1, 100, 101]].tolist() == [1, 2, 3, 4]
    assert ranking.patient_rank[150] == 0 and (ranking.patient_rank > 0).sum() == 4
    assert ranking.patient_severity[0] == "high" and ranking.patient_rated_as[150] == ""


def test_without_per_patient_bounds_no_patient_is_ranked():
    ranking = planted({"hiv": {"1": "high"}})
    assert ranking.top_patients == () and not ranking.patient_rank.any()
