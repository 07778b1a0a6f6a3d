"""The DP-implementation audits behind one registry, as a run carries and reports them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from dptrain.audit.auditor import gdp_epsilon
from dptrain.audit.config import DP_AUDIT_NAMES, AuditConfig
from dptrain.audit.dp_audits import DP_AUDITS, DPAuditInputs, DPAuditRow, run_dp_audits
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.reporting.dp_audit_markdown import dp_audit_console_lines, dp_audit_section, verdict
from dptrain.reporting.results import to_plain
from dptrain.reporting.summary import run_summary
from dptrain.training.config import TrainConfig

from .simulate import non_private_spend

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_cohort(n_patients: int = 400) -> Cohort:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_patients, 6)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(size=n_patients) > 0).astype(np.int64)
    return Cohort.from_records(
        name="toy", features=features, labels=labels, patient_ids=np.arange(n_patients)
    )


def test_the_registry_holds_every_named_audit_and_the_config_orders_them():
    assert set(DP_AUDITS) == set(DP_AUDIT_NAMES)
    assert AuditConfig().dp_audit_names == []
    assert AuditConfig(dp_audits=["whitebox"]).dp_audit_names == ["whitebox"]
    assert AuditConfig(mode="canary", dp_audits=["whitebox", "canary"]).dp_audit_names == [
        "canary",
        "whitebox",
    ]
    assert not AuditConfig(mode="whitebox").leave_many_out
    assert AuditConfig(mode="whitebox").enabled
    assert not AuditConfig(mode="none").enabled


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dp_audits": ["blackbox"]}, r"audit\.dp_audits must name audits from"),
        ({"num_canaries": 1}, r"audit\.num_canaries must be >= 2"),
        ({"canary_kind": "noise"}, r"audit\.canary_kind must be one of"),
        ({"dp_audit_confidence": 1.0}, r"audit\.dp_audit_confidence must be in \(0, 1\)"),
        ({"mode": "tight"}, r"audit\.mode must be one of"),
        ({"whitebox_runs": 0}, r"audit\.whitebox_runs must be an integer >= 1 or auto, got 0"),
        ({"whitebox_runs": "many"}, r"audit\.whitebox_runs must be an integer >= 1 or auto"),
    ],
)
def test_bad_dp_audit_settings_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**options)


def test_whitebox_on_a_private_run_stays_under_the_claim_and_says_so():
    inputs = DPAuditInputs(
        cohort=small_cohort(),
        model_factory=MLPConfig(hidden=[64]),  # 578 coordinates, one per canary
        privacy=PrivacyConfig(epsilon=2.0, delta=1e-4),
        train=TrainConfig(epochs=2, batch_size=50),
        audit=AuditConfig(mode="whitebox", num_canaries=500, whitebox_runs="2"),
        seed=0,
    )
    (row,) = run_dp_audits(inputs)
    assert row.name == "whitebox" and row.applicable and row.counts["canaries"] == 1000
    assert row.counts["runs"] == 2 and "2 models" in row.method
    assert 0 < row.secondary["reachable"] < row.epsilon_accountant
    assert row.secondary["fdp_one_run"] == pytest.approx(
        gdp_epsilon(row.secondary["fdp_one_run_mu"], row.delta)
    )
    assert 0 <= row.epsilon_lower_bound <= row.epsilon_accountant <= 2.0
    assert not row.violates_claim and verdict(row) == "consistent with the claimed ε"
    assert row.wall_seconds > 0
    plain = to_plain(row)
    assert plain["epsilon_lower_bound"] == row.epsilon_lower_bound and "trace" not in plain
    (line,) = dp_audit_console_lines(_report_with(row))
    assert line.startswith("whitebox") and f"accountant's ε = {row.epsilon_accountant:.2f}" in line


def test_whitebox_does_not_apply_to_the_non_private_baseline():
    inputs = DPAuditInputs(
        cohort=small_cohort(),
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(mode="none"),
        train=TrainConfig(epochs=1, batch_size=50),
        audit=AuditConfig(mode="whitebox"),
        seed=0,
    )
    (row,) = run_dp_audits(inputs)
    assert not row.applicable and row.epsilon_lower_bound is None and not row.violates_claim
    assert "no DP optimiser" in verdict(row)
    assert all(
        value is None or not math.isnan(value)
        for value in to_plain(row).values()
        if isinstance(value, float)
    )


def test_a_refuting_bound_is_flagged():
    row = DPAuditRow(
        name="canary",
        method="test",
        applicable=True,
        epsilon_lower_bound=3.0,
        epsilon_accountant=1.0,
        delta=1e-5,
        confidence=0.95,
    )
    assert row.violates_claim and "refutes" in verdict(row)


def test_the_fdp_one_run_bound_sits_beside_the_one_run_bound_in_report_and_summary():
    row = DPAuditRow(
        name="canary",
        method="test",
        applicable=True,
        epsilon_lower_bound=1.76,
        epsilon_accountant=8.0,
        delta=1e-5,
        confidence=0.95,
        secondary={"fdp_one_run": 2.33, "fdp_one_run_mu": 0.57, "gaussian_dp": 3.9},
    )
    section = dp_audit_section(_report_with(row))
    assert "f-DP one-run (Gaussian curve) 2.33, its μ ≥ 0.57, Gaussian-DP estimate 3.90" in section
    assert "Mahloujifar et al. 2024" in section
    report = SimpleNamespace(
        config={"seed": 0},
        privacy=non_private_spend(n_units=100),
        utility=SimpleNamespace(
            overall=SimpleNamespace(auroc=0.7, auprc=0.6, accuracy=0.7, balanced_accuracy=0.7)
        ),
        training={},
        audit=None,
        dp_audits=(row,),
    )
    summary = run_summary(report)
    assert summary["dp_audit/canary/epsilon_lower_bound"] == 1.76
    assert summary["dp_audit/canary/fdp_one_run"] == 2.33
    assert summary["dp_audit/canary/fdp_one_run_mu"] == 0.57
    assert "dp_audit/canary/gaussian_dp" not in summary


def _report_with(row: DPAuditRow):
    class Report:
        dp_audits = (row,)

    return Report()
