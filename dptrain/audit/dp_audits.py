"""Audits of the DP implementation itself, behind one registry: does the run keep its ε?

The leave-many-out audit measures what an attacker learns about real patients; these audits ask
whether the DP-SGD that trained them keeps the accountant's promise, with worst-case inputs:

- ``canary`` (black box, one run): m mislabelled records, each in the training set with
  probability ½, scored by the trained model; Steinke et al.'s one-run ε lower bound, beside
  Mahloujifar et al.'s f-DP one-run bound on the μ of Gaussian DP (`dptrain.audit.canary`).
- ``whitebox`` (Nasr et al. 2023): Dirac gradient canaries handed to the real Opacus optimiser and
  every noisy update observed; a Clopper–Pearson ε lower bound over independent canaries at a
  threshold planned from σ, q and T, beside what that many canaries can reach at best
  (`dptrain.audit.whitebox`; ``audit.whitebox_runs`` pools several models' canaries).

Each returns a `DPAuditRow`: the headline lower bound beside the accountant's ε, the secondary
bounds, and the counts a reader needs to judge it. A lower bound above the accountant's ε refutes
the implementation (at the stated confidence); one below it is consistent with it and, because
the bounds are not tight under subsampling, never a proof of it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dptrain.audit.canary import CanaryAuditResult, canary_audit
from dptrain.audit.config import AuditConfig
from dptrain.audit.whitebox import WhiteboxAuditResult, whitebox_audit
from dptrain.data.cohort import Cohort
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPAuditRow:
    """One DP-implementation audit's answer, as the report and ``results.json`` show it.

    Attributes:
        name: Registry name (``canary``, ``whitebox``).
        method: What was done, in a phrase for the report.
        applicable: False when the audit does not apply to this run (``reason`` says why); the
            numbers are then absent (None), never NaN.
        reason: Why not applicable, or an empty string.
        epsilon_lower_bound: The headline empirical ε lower bound (at ``confidence``).
        epsilon_accountant: The ε the accountant claims for the audited run (``inf`` when not
            private).
        delta: δ of the bound and of the claim.
        confidence: Confidence of the bound.
        secondary: Other bounds from the same scores, by name (e.g. the Gaussian-DP estimate;
            ``fdp_one_run`` and ``fdp_one_run_mu``: the ε and μ of Mahloujifar et al.'s one-run
            μ-GDP bound).
        counts: Canaries, guesses, abstentions, steps: what the bound rests on.
        wall_seconds: Time the audit took.
    """

    name: str
    method: str
    applicable: bool
    reason: str = ""
    epsilon_lower_bound: float | None = None
    epsilon_accountant: float | None = None
    delta: float | None = None
    confidence: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def violates_claim(self) -> bool:
        """Whether the audit refutes the accountant's ε at its confidence."""
        return bool(
            self.applicable
            and self.epsilon_lower_bound is not None
            and self.epsilon_accountant is not None
            and self.epsilon_lower_bound > self.epsilon_accountant
        )


@dataclass(frozen=True)
class DPAuditInputs:
    """What every DP audit gets: the run's training split and its exact recipe."""

    cohort: Cohort
    model_factory: ModelFactory
    privacy: PrivacyConfig
    train: TrainConfig
    audit: AuditConfig
    seed: int

    def recipe(self) -> dict[str, Any]:
        """The keyword arguments every DP audit takes: the run's recipe and the canary settings."""
        return {
            "cohort": self.cohort,
            "model_factory": self.model_factory,
            "privacy": self.privacy,
            "train": self.train,
            "seed": self.seed,
            "num_canaries": self.audit.num_canaries,
            "confidence": self.audit.dp_audit_confidence,
        }


def _canary(inputs: DPAuditInputs) -> DPAuditRow:
    result = canary_audit(**inputs.recipe(), kind=inputs.audit.canary_kind)
    return DPAuditRow(
        name="canary",
        method=(
            f"black box, one run: {result.num_canaries} {result.kind} canaries, each trained on "
            "with probability ½; Steinke et al. (2023) one-run bound, beside Mahloujifar et "
            "al.'s (2024) f-DP one-run bound on μ-GDP from the same guesses"
        ),
        **_bound(result),
        secondary={
            "fdp_one_run": result.epsilon_fdp_one_run,
            "fdp_one_run_mu": result.mu_fdp_one_run,
            "gaussian_dp": result.epsilon_gaussian_dp,
            "clopper_pearson": result.epsilon_clopper_pearson,
            "auroc": result.summary.auroc,
        },
        counts={
            "canaries": result.num_canaries,
            "included": result.num_included,
            "guesses": result.num_guesses,
            "abstentions": result.num_abstentions,
            "correct": result.num_correct,
        },
    )


def _whitebox(inputs: DPAuditInputs) -> DPAuditRow:
    if not inputs.privacy.private:
        return DPAuditRow(
            name="whitebox",
            method="white box: Dirac gradient canaries in the DP optimiser",
            applicable=False,
            reason="the non-private baseline has no DP optimiser to audit",
        )
    result = whitebox_audit(**inputs.recipe(), runs=inputs.audit.whitebox_runs)
    runs = f"{result.num_runs} models" if result.num_runs > 1 else "one model"
    return DPAuditRow(
        name="whitebox",
        method=(
            f"white box (Nasr et al. 2023): {result.num_canaries} Dirac gradient canaries in "
            f"Opacus' optimiser ({result.grad_sample_mode}, {runs}), every noisy update observed "
            f"over {result.num_steps} steps; Clopper–Pearson bound at the likelihood-ratio "
            "threshold planned from σ, q and T"
        ),
        **_bound(result),
        secondary={
            "reachable": result.epsilon_reachable,
            "gaussian_dp": result.epsilon_gaussian_dp,
            "one_run": result.epsilon_one_run,
            "fdp_one_run": result.epsilon_fdp_one_run,
            "fdp_one_run_mu": result.mu_fdp_one_run,
            "in_step_mean": result.in_step_mean,
            "in_step_std": result.in_step_std,
            "out_step_mean": result.out_step_mean,
            "noise_multiplier": result.noise_multiplier,
        },
        counts={
            "canaries": result.num_canaries,
            "runs": result.num_runs,
            "steps": result.num_steps,
            **(
                {"runs_for_half_epsilon": result.runs_for_half_epsilon}
                if result.runs_for_half_epsilon is not None
                else {}
            ),
        },
    )


def _bound(result: CanaryAuditResult | WhiteboxAuditResult) -> dict[str, Any]:
    """The fields every applicable row takes from its audit: the bound beside the claim."""
    return {
        "applicable": True,
        "epsilon_lower_bound": result.epsilon_lower_bound,
        "epsilon_accountant": result.epsilon_accountant,
        "delta": result.delta,
        "confidence": result.confidence,
    }


# name → audit; `audit.mode` and `audit.dp_audits` name entries of this registry.
DP_AUDITS: dict[str, Callable[[DPAuditInputs], DPAuditRow]] = {
    "canary": _canary,
    "whitebox": _whitebox,
}


def run_dp_audits(inputs: DPAuditInputs) -> tuple[DPAuditRow, ...]:
    """Runs every DP audit the config names, in order, each timed.

    Example:
        >>> from dptrain.audit.config import AuditConfig
        >>> AuditConfig(mode="whitebox", dp_audits=["canary"]).dp_audit_names
        ['whitebox', 'canary']
    """
    rows = []
    for name in inputs.audit.dp_audit_names:
        started = time.perf_counter()
        row = DP_AUDITS[name](inputs)
        row = dataclasses.replace(row, wall_seconds=time.perf_counter() - started)
        if row.applicable:
            log.info(
                "%s audit: ε lower bound %.3g against the accountant's ε %s",
                name,
                row.epsilon_lower_bound,
                f"{row.epsilon_accountant:.3g}",  # inf for the non-private baseline
            )
        rows.append(row)
    return tuple(rows)
