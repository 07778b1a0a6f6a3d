"""``audit.num_models=auto``: grow the audit by rounds of model pairs until its answer is stable.

The first round trains ``auto_round_models`` models, each later round as many more (at most up to
``max_models``). After every round the two per-patient answers are measured on all models so far:
the Spearman–Brown reliability of the patient ranking (`dptrain.audit.reliability`) and the
FDR-controlled list of exposed patients (`dptrain.audit.fdr`). The audit stops, and says why, at
the first of (the two stability rules only from ``min_models_for_patients`` models on, the K the
report asks for before per-patient conclusions: a few rounds of a weakly leaking recipe give a
reliability near 0 that barely moves, which is no stable answer):

1. **reliability stable**: it changed by less than ``auto_tolerance`` since the last round;
2. **FDR list stable**: the same non-empty set of patients as in the last round (an empty list
   that stays empty is no sign of stability: more models give the tests more power);
3. **model budget**: K reached ``max_models``;
4. **time budget**: the next round, at the last round's pace, would end past ``max_minutes``.

Growing keeps the earlier models valid because the membership masks' first rows do not depend on
how many are drawn (`balanced_membership_masks` draws pair after pair from one stream): the masks
are drawn once for ``max_models`` and each round takes the next rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dptrain.audit.config import AuditConfig
from dptrain.audit.fdr import patient_exposure
from dptrain.audit.reliability import split_half_reliability
from dptrain.data.cohort import Cohort

NOT_IN_JSON = {"json": False}
# The reliability's random splits use the same stream as `analyse_signals`, so the last round's
# value is the one the report prints.
RELIABILITY_STREAM = 0x72656C69


@dataclass(frozen=True)
class AuditRound:
    """The per-patient answer after one round of models.

    Attributes:
        num_models: K after the round.
        reliability: Spearman–Brown reliability of the patient ranking at this K (NaN below 8).
        n_exposed: Patients on the FDR list.
        seconds: Wall time of the round (training and measuring).
        elapsed_seconds: Wall time since the audit started.
        exposed: ``(n_patients,)`` bool, the FDR list.
    """

    num_models: int
    reliability: float
    n_exposed: int
    seconds: float
    elapsed_seconds: float
    exposed: np.ndarray = field(metadata=NOT_IN_JSON)


@dataclass(frozen=True)
class StoppingRule:
    """When a growing audit stops (see the module docstring for the order of the rules).

    Attributes:
        round_models: Models per round (even).
        max_models: Largest K.
        max_minutes: Wall-time budget of the audit.
        tolerance: Largest change of reliability between rounds that counts as stable.
        min_models: Fewest models at which a stable answer may stop the audit.
    """

    round_models: int
    max_models: int
    max_minutes: float
    tolerance: float
    min_models: int = 0

    @classmethod
    def from_audit(cls, audit: AuditConfig) -> StoppingRule:
        """The rule of ``audit.auto_round_models``, ``max_models``, ``max_minutes``, tolerance."""
        return cls(
            round_models=audit.auto_round_models,
            max_models=audit.max_models,
            max_minutes=audit.max_minutes,
            tolerance=audit.auto_tolerance,
            min_models=audit.min_models_for_patients,
        )

    def next_size(self, num_models: int) -> int:
        """K after the next round."""
        return min(num_models + self.round_models, self.max_models)

    def reason_to_stop(self, rounds: Sequence[AuditRound]) -> str | None:
        """Why the audit stops after the last of ``rounds``, or None to grow it further.

        Example:
            >>> rule = StoppingRule(round_models=16, max_models=256, max_minutes=30, tolerance=0.02)
            >>> def at(k, rho):
            ...     return AuditRound(k, rho, 0, 1.0, k / 16, np.zeros(5, bool))
            >>> rule.reason_to_stop([at(16, 0.40)]) is None
            True
            >>> rule.reason_to_stop([at(16, 0.40), at(32, 0.41)])[:18]
            'reliability stable'
        """
        last = rounds[-1]
        if len(rounds) >= 2 and last.num_models >= self.min_models:
            previous = rounds[-2]
            change = abs(last.reliability - previous.reliability)
            if math.isfinite(change) and change < self.tolerance:
                return (
                    f"reliability stable: the ranking's reliability went from "
                    f"{previous.reliability:.3f} (K = {previous.num_models}) to "
                    f"{last.reliability:.3f} (K = {last.num_models}), a change below "
                    f"audit.auto_tolerance = {self.tolerance:g}"
                )
            if last.n_exposed and np.array_equal(last.exposed, previous.exposed):
                patients = "patient is" if last.n_exposed == 1 else "patients are"
                return (
                    f"FDR list stable: the same {last.n_exposed} {patients} detectably "
                    f"exposed at K = {previous.num_models} and K = {last.num_models}"
                )
        if last.num_models >= self.max_models:
            return f"model budget: K = {last.num_models} reached audit.max_models"
        added = self.next_size(last.num_models) - last.num_models
        pace = last.seconds / max(last.num_models - _before(rounds), 1)
        expected = last.elapsed_seconds + pace * added
        if expected > 60 * self.max_minutes:
            return (
                f"time budget: {last.elapsed_seconds / 60:.1f} min spent, and {added} more "
                f"models would end at about {expected / 60:.1f} min, past "
                f"audit.max_minutes = {self.max_minutes:g}"
            )
        return None


def _before(rounds: Sequence[AuditRound]) -> int:
    return rounds[-2].num_models if len(rounds) >= 2 else 0


def grow_audit(
    *,
    train_models: Callable[[range], np.ndarray],
    membership: np.ndarray,
    cohort: Cohort,
    rule: StoppingRule,
    fdr: float,
    aggregation: str,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[np.ndarray, tuple[AuditRound, ...], str]:
    """Trains rounds of models until ``rule`` stops the audit.

    Args:
        train_models: Trains (or loads) the models of a range of indices and returns their
            ``(len(range), n_records)`` signals.
        membership: ``(max_models, n_patients)`` bool masks; round r uses the next rows.
        cohort: The audit pool.
        rule: When to stop.
        fdr: False-discovery rate of the exposed list.
        aggregation: ``max`` or ``mean`` over a patient's records.
        seed: The audit's seed (reliability's random splits).
        clock: Seconds, for the time budget.

    Returns:
        The signals of all models trained, the rounds, and why the audit stopped.
    """
    started = clock()
    record_membership = cohort.record_mask(membership)
    signals = np.empty((0, cohort.n_records))
    rounds: list[AuditRound] = []
    while True:
        round_started = clock()
        size = rule.next_size(len(signals))
        signals = np.concatenate([signals, train_models(range(len(signals), size))])
        reliability = split_half_reliability(
            signals,
            record_membership[:size],
            cohort.record_patient,
            n_patients=cohort.n_patients,
            aggregation=aggregation,
            rng=np.random.default_rng([seed, RELIABILITY_STREAM]),
        )
        exposure = patient_exposure(
            signals,
            record_membership[:size],
            cohort.record_patient,
            n_patients=cohort.n_patients,
            rate=fdr,
        )
        now = clock()
        rounds.append(
            AuditRound(
                num_models=size,
                reliability=reliability.full_rho,
                n_exposed=exposure.n_exposed,
                seconds=now - round_started,
                elapsed_seconds=now - started,
                exposed=exposure.exposed,
            )
        )
        reason = rule.reason_to_stop(rounds)
        if reason is not None:
            return signals, tuple(rounds), reason
