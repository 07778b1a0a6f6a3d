"""Attribute inference: does a model reveal a sensitive input of the patients it trained on?

The attacker of Fredrikson et al. (2014) as formalised by Yeom et al. (2018, "Privacy risk in
machine learning", Algorithm 3 without the membership step): they know a patient's record except
one sensitive attribute (HIV risk factor, haemophilia), and the patient's label; they query the
model with each candidate value of the attribute and guess the value under which the true label
has the lowest loss, i.e. the highest signal φ = log p_y − log(1 − p_y) (loss is monotone in φ).

What matters for privacy is not the attacker's accuracy itself, which a model that never saw the
patient may already reach by learning the population's correlations, but how much more accurate
it is on the model's members than on its non-members: Yeom et al.'s attribute advantage. In the
leave-many-out audit every patient is a member of one model of each complementary pair and a
non-member of the other, so the advantage is a paired difference per patient: the attacker's
accuracy on the patient under the K/2 models that trained on them minus under the K/2 that did
not, averaged over patients; its interval is a percentile bootstrap over patients (the patient is
the unit, and the per-patient difference already averages over the models).

The candidates' forward passes run where the audit's models are queried
(`dptrain.audit.reference`), one extra pass over the pool per candidate value, and only when
``audit.sensitive_attributes`` names an attribute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dptrain.audit.patients import aggregate_by_patient
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError

ATTACKER = (
    "lowest loss (Yeom et al. 2018): the attacker knows the rest of the record and the label, "
    "queries the model with each value of the attribute and guesses the one under which the true "
    "label is most probable"
)
NUM_BOOTSTRAP = 1000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributeProbe:
    """How to set one sensitive attribute to each of its candidate values in a feature matrix.

    A numeric column with two values is set to each value; a one-hot encoded categorical column
    (``name=level`` columns) is set to each level's indicator vector.

    Attributes:
        name: The attribute (a data column name).
        columns: Feature columns it occupies: one numeric column, or one per one-hot level.
        levels: Names of the candidate values (``0``/``1``, or the one-hot levels).
        values: ``(n_levels, len(columns))`` what each candidate writes into ``columns``.
    """

    name: str
    columns: tuple[int, ...]
    levels: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]

    @property
    def n_levels(self) -> int:
        """Number of candidate values."""
        return len(self.levels)

    def with_level(self, features: np.ndarray, level: int) -> np.ndarray:
        """A copy of ``features`` with every record's attribute set to candidate ``level``."""
        changed = np.array(features, copy=True)
        changed[:, list(self.columns)] = np.asarray(self.values[level], dtype=changed.dtype)
        return changed

    def true_level(self, features: np.ndarray) -> np.ndarray:
        """``(n_records,)`` int64 index of each record's own value; -1 where it is missing."""
        own = np.asarray(features)[:, list(self.columns)]
        candidates = np.asarray(self.values, dtype=own.dtype)
        matches = np.all(own[:, None, :] == candidates[None, :, :], axis=2)
        return np.where(matches.any(axis=1), matches.argmax(axis=1), -1).astype(np.int64)


def attribute_probes(cohort: Cohort, names: Sequence[str]) -> tuple[AttributeProbe, ...]:
    """Resolves ``audit.sensitive_attributes`` against the cohort's feature columns.

    Args:
        cohort: The audit pool (a table: its features are named).
        names: Attribute names: a numeric feature column with exactly two values, or a one-hot
            encoded categorical column (features ``name=level``).

    Returns:
        One probe per name, in order.

    Raises:
        ConfigError: If a name is not an input feature, or a numeric one has other than two
            values.

    Example:
        >>> cohort = Cohort.from_records(name="t", features=np.array([[0, 5], [1, 6]], np.float32),
        ...     labels=np.array([0, 1]), patient_ids=np.array(["a", "b"]),
        ...     feature_names=("hemo", "cd4"))
        >>> attribute_probes(cohort, ["hemo"])[0].levels
        ('0', '1')
    """
    names_to_index = {name: index for index, name in enumerate(cohort.feature_names)}
    probes = []
    for name in names:
        if name in names_to_index:
            column = names_to_index[name]
            values = np.asarray(cohort.features[:, column], dtype=np.float64)
            distinct = np.unique(values[~np.isnan(values)])
            if len(distinct) != 2:
                raise ConfigError(
                    f"audit.sensitive_attributes: feature {name!r} has {len(distinct)} distinct "
                    "values; attribute inference needs a binary column or a one-hot encoded "
                    "categorical one (data.categorical_columns)"
                )
            probe = AttributeProbe(
                name=name,
                columns=(column,),
                levels=tuple(f"{value:g}" for value in distinct),
                values=tuple((float(value),) for value in distinct),
            )
            probes.append(_with_readable_levels(probe, cohort))
            continue
        prefix = f"{name}="
        one_hot = [
            (i, f[len(prefix) :])
            for i, f in enumerate(cohort.feature_names)
            if f.startswith(prefix)
        ]
        if len(one_hot) < 2:
            raise ConfigError(
                f"audit.sensitive_attributes: {name!r} is not an input feature of "
                f"{cohort.name!r} (neither a column nor one-hot columns {prefix}<level>); "
                "name a feature column that is not excluded"
            )
        identity = np.eye(len(one_hot))
        probes.append(
            AttributeProbe(
                name=name,
                columns=tuple(index for index, _ in one_hot),
                levels=tuple(level for _, level in one_hot),
                values=tuple(tuple(float(v) for v in row) for row in identity),
            )
        )
    return tuple(probes)


def _with_readable_levels(probe: AttributeProbe, cohort: Cohort) -> AttributeProbe:
    """Levels named as the subgroup of the same name names them (``1 (hemophilia)``), if one."""
    names = cohort.attributes.get(probe.name)
    if names is None:
        return probe
    first_record = np.unique(cohort.record_patient, return_index=True)[1]
    level = probe.true_level(np.asarray(cohort.features)[first_record])
    readable = []
    for index, raw in enumerate(probe.levels):
        found = np.unique(names[level == index])
        readable.append(f"{raw} ({found[0]})" if len(found) == 1 else raw)
    return dataclasses.replace(probe, levels=tuple(readable))


def probes_key(probes: Sequence[AttributeProbe]) -> str:
    """What a saved model's candidate signals were computed for ("" without probes)."""
    if not probes:
        return ""
    return json.dumps([[p.name, list(p.columns), [list(v) for v in p.values]] for p in probes])


def candidate_signals(
    predict_signals, features: np.ndarray, probes: Sequence[AttributeProbe]
) -> np.ndarray:
    """φ of every record with each probe's attribute set to each candidate value.

    Args:
        predict_signals: ``features -> (n_records,)`` φ of the true labels under one model.
        features: ``(n_records, n_features)`` the pool's raw features.
        probes: The sensitive attributes.

    Returns:
        ``(sum of n_levels, n_records)`` float64, the probes' candidates in order.
    """
    rows = [
        predict_signals(probe.with_level(features, level))
        for probe in probes
        for level in range(probe.n_levels)
    ]
    return np.stack(rows).astype(np.float64)


def guess_correct(signals: np.ndarray, true_level: np.ndarray) -> np.ndarray:
    """Whether the lowest-loss guess is right: 1, 0, 1/t for a t-way tie, NaN if unknown.

    Args:
        signals: ``(..., n_levels, n_records)`` φ under each candidate.
        true_level: ``(n_records,)`` index of the true value, -1 where missing.

    Returns:
        ``(..., n_records)`` float64 expected correctness of the guess (ties broken at random).

    Example:
        >>> signals = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0]])  # 2 values, 3 records
        >>> guess_correct(signals, np.array([0, 0, 1])).tolist()
        [1.0, 0.0, 0.5]
    """
    best = signals.max(axis=-2, keepdims=True)
    at_best = signals == best
    known = true_level >= 0
    own = np.take_along_axis(
        at_best,
        np.broadcast_to(np.maximum(true_level, 0), (*at_best.shape[:-2], 1, len(known))),
        axis=-2,
    )[..., 0, :]
    correct = own / at_best.sum(axis=-2)
    return np.where(known, correct, np.nan)


@dataclass(frozen=True)
class AttributeInferenceRow:
    """The attacker on the patients whose attribute has one true value (or on all of them).

    Intervals are ``(2,)`` percentile bootstrap intervals over patients.

    Attributes:
        attribute: The sensitive attribute.
        true_value: ``all`` or one level: the patients whose attribute has that value.
        n_patients: Patients with a known value in this row.
        member_accuracy: Mean over patients of the attacker's accuracy under the models that
            trained on them.
        member_interval: Its interval.
        nonmember_accuracy: The same under the models that did not.
        nonmember_interval: Its interval.
        advantage: ``member_accuracy − nonmember_accuracy`` (paired per patient).
        advantage_interval: Its interval; excluding 0 means the models reveal the attribute of
            their own patients more than of others.
    """

    attribute: str
    true_value: str
    n_patients: int
    member_accuracy: float
    member_interval: np.ndarray
    nonmember_accuracy: float
    nonmember_interval: np.ndarray
    advantage: float
    advantage_interval: np.ndarray


@dataclass(frozen=True)
class AttributeInference:
    """Attribute inference against the audit models for one sensitive attribute.

    Attributes:
        attribute: The sensitive attribute.
        attacker: How the attacker guesses.
        levels: Candidate values.
        majority_accuracy: Accuracy of always guessing the most common value (the attacker
            without a model), over the patients with a known value.
        confidence: Two-sided confidence of the intervals.
        num_bootstrap: Bootstrap resamples of patients.
        rows: All patients first, then one row per true value.
    """

    attribute: str
    attacker: str
    levels: tuple[str, ...]
    majority_accuracy: float
    confidence: float
    num_bootstrap: int
    rows: tuple[AttributeInferenceRow, ...]

    @property
    def overall(self) -> AttributeInferenceRow:
        """The row over all patients."""
        return self.rows[0]


def attribute_inference(
    *,
    probe: AttributeProbe,
    signals: np.ndarray,
    true_level: np.ndarray,
    membership: np.ndarray,
    record_patient: np.ndarray,
    confidence: float = 0.95,
    num_bootstrap: int = NUM_BOOTSTRAP,
    rng: np.random.Generator,
) -> AttributeInference:
    """The lowest-loss attacker's accuracy on members and non-members, and its advantage.

    Args:
        probe: The sensitive attribute.
        signals: ``(K, n_levels, n_records)`` φ under each candidate value, every model.
        true_level: ``(n_records,)`` index of each record's value, -1 where missing.
        membership: ``(K, n_patients)`` bool, models in complementary pairs.
        record_patient: ``(n_records,)`` patient index of every record.
        confidence: Two-sided confidence of the bootstrap intervals.
        num_bootstrap: Resamples of patients.
        rng: Randomness of the bootstrap.

    Returns:
        The attribute's result.
    """
    n_patients = membership.shape[1]
    correct = guess_correct(signals, true_level)  # (K, n_records)
    per_patient = aggregate_by_patient(
        correct, record_patient, n_patients=n_patients, how="mean"
    )  # (K, n_patients), NaN where the patient's value is unknown
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(membership, per_patient, 0.0).sum(axis=0) / membership.sum(axis=0)
        outside = np.where(~membership, per_patient, 0.0).sum(axis=0) / (~membership).sum(axis=0)
    patient_level = _patient_level(true_level, record_patient, n_patients)
    known = (patient_level >= 0) & ~np.isnan(inside) & ~np.isnan(outside)
    counts = np.bincount(patient_level[known], minlength=probe.n_levels)
    rows = [_row(probe.name, "all", inside[known], outside[known], confidence, num_bootstrap, rng)]
    for level, name in enumerate(probe.levels):
        chosen = known & (patient_level == level)
        rows.append(
            _row(probe.name, name, inside[chosen], outside[chosen], confidence, num_bootstrap, rng)
        )
    return AttributeInference(
        attribute=probe.name,
        attacker=ATTACKER,
        levels=probe.levels,
        majority_accuracy=float(counts.max() / counts.sum()) if counts.sum() else float("nan"),
        confidence=confidence,
        num_bootstrap=num_bootstrap,
        rows=tuple(rows),
    )


def infer_attributes(
    *,
    probes: Sequence[AttributeProbe],
    attribute_signals: np.ndarray | None,
    membership: np.ndarray,
    features: np.ndarray,
    record_patient: np.ndarray,
    confidence: float,
    seed: int,
) -> tuple[AttributeInference, ...]:
    """The attacker against every audit model, one result per sensitive attribute.

    Args:
        probes: The sensitive attributes, in the order of ``attribute_signals``' candidates.
        attribute_signals: ``(K, sum of n_levels, n_records)`` φ under every candidate value.
        membership: ``(K, n_patients)`` bool, models in complementary pairs.
        features: ``(n_records, n_features)`` the pool's raw features (for the true values).
        record_patient: ``(n_records,)`` patient index of every record.
        confidence: Two-sided confidence of the intervals.
        seed: Seed of the bootstraps.

    Returns:
        One result per probe (empty without probes).

    Raises:
        ValueError: If ``attribute_signals`` is missing or has the wrong shape.
    """
    if not probes:
        return ()
    expected = (len(membership), sum(probe.n_levels for probe in probes), len(record_patient))
    if attribute_signals is None or attribute_signals.shape != expected:
        shape = None if attribute_signals is None else attribute_signals.shape
        raise ValueError(f"attribute_signals must have shape {expected}, got {shape}")
    results, start = [], 0
    for offset, probe in enumerate(probes):
        results.append(
            attribute_inference(
                probe=probe,
                signals=attribute_signals[:, start : start + probe.n_levels],
                true_level=probe.true_level(features),
                membership=membership,
                record_patient=record_patient,
                confidence=confidence,
                rng=np.random.default_rng([seed, 0x61747472, offset]),  # "attr"
            )
        )
        start += probe.n_levels
        log.info(
            "audit: %s inference, member advantage %.3f", probe.name, results[-1].overall.advantage
        )
    return tuple(results)


def _patient_level(
    true_level: np.ndarray, record_patient: np.ndarray, n_patients: int
) -> np.ndarray:
    """A patient's value: their first record's known one (-1 if none is known)."""
    level = np.full(n_patients, -1, dtype=np.int64)
    known = np.flatnonzero(true_level >= 0)
    level[record_patient[known[::-1]]] = true_level[known[::-1]]  # first record wins
    return level


def _row(
    attribute: str,
    value: str,
    inside: np.ndarray,
    outside: np.ndarray,
    confidence: float,
    num_bootstrap: int,
    rng: np.random.Generator,
) -> AttributeInferenceRow:
    n = len(inside)
    nan_pair = np.full(2, np.nan)
    if n == 0:
        return AttributeInferenceRow(
            attribute, value, 0, np.nan, nan_pair, np.nan, nan_pair, np.nan, nan_pair
        )
    resamples = rng.integers(0, n, size=(num_bootstrap, n))
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]

    def interval(values: np.ndarray) -> np.ndarray:
        return np.quantile(values[resamples].mean(axis=1), tails)

    return AttributeInferenceRow(
        attribute=attribute,
        true_value=value,
        n_patients=n,
        member_accuracy=float(inside.mean()),
        member_interval=interval(inside),
        nonmember_accuracy=float(outside.mean()),
        nonmember_interval=interval(outside),
        advantage=float((inside - outside).mean()),
        advantage_interval=interval(inside - outside),
    )
