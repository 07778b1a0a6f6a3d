"""The audit's report: every measured figure beside its floor, the list, the share, reliability."""

from types import SimpleNamespace

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.run import analyse_signals
from dptrain.data.cohort import Cohort
from dptrain.data.splits import balanced_membership_masks
from dptrain.privacy.accounting import PrivacySpend
from dptrain.reporting.audit_markdown import (
    attacks_section,
    audit_console_lines,
    headline_section,
    subgroup_section,
)
from dptrain.reporting.patients import patient_risk_frame
from dptrain.reporting.summary import audit_headline_metrics

N_PATIENTS, LEAKY = 300, 30  # the first 30 patients leak (true AUC 0.98)


def spend(private: bool) -> PrivacySpend:
    return PrivacySpend(
        private=private,
        unit="record",
        epsilon=8.0 if private else float("inf"),
        epsilon_rdp=8.5 if private else float("inf"),
        epsilon_target=8.0 if private else float("inf"),
        delta=1e-5,
        noise_multiplier=1.0 if private else 0.0,
        sample_rate=0.05,
        steps=200,
        epochs=10,
        max_grad_norm=1.0,
        accountant="prv",
        n_units=N_PATIENTS,
        max_records_per_patient=2,
    )


def audit_of(num_models: int, *, private: bool = False, **options):
    ids = np.array([f"p{i:03d}" for i in range(N_PATIENTS)])
    record_ids = np.repeat(ids, np.where(np.arange(N_PATIENTS) % 3 == 0, 2, 1))
    cohort = Cohort.from_records(
        name="toy",
        features=np.zeros((len(record_ids), 2), np.float32),
        labels=(np.arange(len(record_ids)) % 2).astype(np.int64),
        patient_ids=record_ids,
        attributes={"sex": {pid: "F" if i % 2 else "M" for i, pid in enumerate(ids)}},
    )
    membership = balanced_membership_masks(
        patient_labels=cohort.patient_labels, num_models=num_models, seed=0
    )
    rng = np.random.default_rng(0)
    leaky = cohort.record_patient < LEAKY
    record_membership = cohort.record_mask(membership)
    signals = (
        rng.normal(0, 2, cohort.n_records)
        + 2.8 * (record_membership & leaky)
        + rng.normal(size=record_membership.shape)
    )
    config = AuditConfig(num_models=num_models, rmia_num_population=100, null_repeats=5, **options)
    result = analyse_signals(
        signals=signals,
        membership=membership,
        cohort=cohort,
        model_privacy=spend(private),
        audit=config,
        seed=0,
    )
    return SimpleNamespace(audit=result, privacy=spend(private), dp_audits=())


@pytest.fixture(scope="module")
def report():
    return audit_of(16)


def test_analysis_finds_the_leaky_patients_and_names_the_lira_variant(report):
    audit = report.audit
    exposed = audit.exposure.exposed
    assert exposed[:LEAKY].mean() > 0.8 and exposed[LEAKY:].sum() <= 2
    assert (
        audit.deconvolution.share_lower[0]
        <= LEAKY / N_PATIENTS
        <= audit.deconvolution.share_upper[0]
    )
    assert audit.null_floor.repeats == 5 and audit.null_floor.attack == audit.best_attack
    variants = {attack.name: attack.variant for attack in audit.attacks}
    assert variants["lira"] == variants["lira_offline"] == "fixed variance"  # auto, K < 64
    assert variants["loss"] == variants["rmia"] == ""
    per_record = audit_of(16, lira_fixed_variance=False).audit.attacks
    assert {a.variant for a in per_record if a.name.startswith("lira")} == {"per-record variance"}


def test_headline_table_shows_every_per_patient_figure_beside_its_floor(report):
    text = headline_section(report)
    header = next(line for line in text.splitlines() if "allowed by the DP guarantee" in line)
    assert "noise floor" in header
    rows = [line for line in text.splitlines() if line.startswith("| patients with AUC >")]
    assert len(rows) == 3 and all(row.count("|") == 5 for row in rows)
    per_patient = next(line for line in text.splitlines() if "attack AUC, per patient" in line)
    floor = report.audit.null_floor
    assert f"max {floor.band(floor.max_auc)[0]:.3f}" in per_patient
    assert "patients detectably exposed (FDR 5%)" in text
    assert f"{report.audit.exposure.n_exposed} of {N_PATIENTS}" in text
    assert "estimated share with true AUC > 0.8 (empirical Bayes)" in text
    assert "Reading individual patients." in text and "Spearman–Brown" in text


def test_subgroups_count_the_fdr_list_and_attacks_name_the_variant(report):
    audit = report.audit
    text = subgroup_section(audit)
    assert "FDR 5% list" in text and "own FDR list" in text
    by_value = {row.value: row for row in audit.subgroups}
    assert by_value["F"].exposed_fdr + by_value["M"].exposed_fdr == audit.exposure.n_exposed
    assert by_value["all patients"].exposed_fdr_within == audit.exposure.n_exposed
    assert "lira (fixed variance)" in attacks_section(audit)


def test_console_metrics_and_csv_carry_the_new_numbers(report):
    lines = audit_console_lines(report)
    assert len(lines) == 3 and "noise floor" in lines[2] and "detectably exposed" in lines[2]
    metrics = audit_headline_metrics(report.audit)
    assert metrics["audit/patients_exposed_fdr"] == report.audit.exposure.n_exposed
    for key in ("null_patient_auc_max", "reliability_full", "estimated_share_above_0.8_lower"):
        assert np.isfinite(metrics[f"audit/{key}"]), key
    frame = patient_risk_frame(report.audit)
    assert {"shrunken_auc", "p_value", "q_value", "exposed_fdr"} <= set(frame.columns)
    assert frame["exposed_fdr"].sum() == report.audit.exposure.n_exposed
    assert set(frame.loc[frame["exposed_fdr"], "patient_id"]) <= {f"p{i:03d}" for i in range(40)}


def test_too_few_models_for_reliability_still_reports(report):
    small = audit_of(4)
    assert np.isnan(small.audit.reliability.full_rho)
    assert "cannot be measured" in headline_section(small)


def test_the_budget_row_compares_the_empirical_bound_with_the_substitution_guarantee():
    import dataclasses

    private = audit_of(16, private=True)
    text = headline_section(private)
    row = next(line for line in text.splitlines() if line.startswith("| ε |"))
    allowed = 2 * private.audit.bounds.patient_epsilon
    assert f"2ε = {allowed:.2f}" in row and "ABOVE" not in row
    lower = dataclasses.replace(private.audit.epsilon_lower_bound, epsilon=allowed + 0.5)
    broken = SimpleNamespace(
        audit=dataclasses.replace(private.audit, epsilon_lower_bound=lower),
        privacy=private.privacy,
        dp_audits=(),
    )
    row = next(line for line in headline_section(broken).splitlines() if line.startswith("| ε |"))
    assert "ABOVE it" in row and "audit.dp_audits=[canary,whitebox]" in row
    assert "2ε" not in next(
        line for line in headline_section(audit_of(16)).splitlines() if line.startswith("| ε |")
    )
