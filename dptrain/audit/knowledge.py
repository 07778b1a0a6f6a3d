"""What an attacker who knows only part of a record learns: exposure as a function of knowledge.

The leave-many-out audit scores a patient with their full record and label, the strongest
black-box attacker. A real attacker usually knows less: a patient's demographics from a public
profile, perhaps a few labs. Following the partial-knowledge setting of Jayaraman & Evans (2022,
"Are attribute inference attacks just imputation?") and the imputation attackers of
Fredrikson et al. (2014), each knowledge level names the feature groups the attacker knows
(``audit.knowledge``, groups from ``data.feature_groups``): the record they query the model with
keeps the known features and replaces every other one by the population's value, the median of
the pool's records for a numeric input and the most frequent level for a one-hot block; the label
is known. ``all`` is the full record, i.e. the audit's own attacker. Images and signals have no
named features: their levels name regions of the record (a centre crop, a thumbnail, leads, a
time window) and the rest is taken from the pool's mean record (`dptrain.audit.knowledge_regions`).
Both are an `Imputation`, so everything after the query is shared.

Every audit model scores the imputed pool once per partial level (one extra forward pass each,
`dptrain.audit.reference`), and each level's signals go through exactly the per-patient
machinery of the full audit (`record_vulnerability`, `patient_risk`): per-patient AUC, its
median, 99th percentile and maximum, and the share of patients above each risk threshold, for the
cohort and every subgroup, with Clopper–Pearson intervals and the noise floor of the membership-free
re-labelled signals (`dptrain.audit.null`'s method). At ``all`` the numbers are the audit's own,
bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dptrain.audit.knowledge_regions import RecordLayout, record_layout, region_levels
from dptrain.audit.memorisation import proportion_interval
from dptrain.audit.metrics import record_vulnerability
from dptrain.audit.null import null_relabellings
from dptrain.audit.patients import patient_risk
from dptrain.audit.subgroups import WHOLE_COHORT
from dptrain.data.cohort import Cohort
from dptrain.data.records import Records, chunks, record_shape
from dptrain.errors import ConfigError
from dptrain.models import model_frontend

FULL_RECORD = "all"
IMPUTATION = (
    "unknown inputs replaced by the pool's median (numeric) or most frequent level (one-hot "
    "blocks); the label is known"
)
FRONTEND_CHUNK = 512


class Imputation(Protocol):
    """How an attacker who knows part of a record forms their query from the true record.

    A table level (`ColumnImputation`) fills unknown columns; an image or signal level
    (`dptrain.audit.knowledge_regions.RegionImputation`) fills unknown regions.
    """

    description: str  # how unknown parts are filled, in words, for the report

    @property
    def imputed_inputs(self) -> int:
        """Input values of a record the attacker does not know."""

    def impute(self, records: np.ndarray) -> np.ndarray:
        """``(n, *record_shape)`` in-memory records as the attacker queries them."""

    def queries(self, records: Records) -> Records:
        """The pool as the attacker queries it (in memory or lazily imputed)."""

    def key(self) -> list:
        """JSON-able: what the queries depend on, for saved models' signals."""


@dataclass(frozen=True, eq=False)
class ColumnImputation:
    """A table attacker: unknown columns set to the population value.

    Attributes:
        unknown_columns: Feature columns replaced by the population value.
        fill_values: ``(len(unknown_columns),)`` the population value written into each.
    """

    unknown_columns: tuple[int, ...]
    fill_values: tuple[float, ...]
    description = IMPUTATION

    @property
    def imputed_inputs(self) -> int:
        """Columns the attacker does not know."""
        return len(self.unknown_columns)

    def impute(self, records: np.ndarray) -> np.ndarray:
        """A copy of ``records`` with the unknown columns set to the population values."""
        imputed = np.array(records, copy=True)
        if self.unknown_columns:
            columns = list(self.unknown_columns)
            imputed[:, columns] = np.asarray(self.fill_values, dtype=imputed.dtype)
        return imputed

    def queries(self, records: Records) -> np.ndarray:
        """The imputed table (tables are in memory)."""
        return self.impute(records)

    def key(self) -> list:
        """The unknown columns and their fill values."""
        return [list(self.unknown_columns), list(self.fill_values)]


@dataclass(frozen=True, eq=False)
class KnowledgeLevel:
    """One attacker: what they know, and how the rest of a record is imputed.

    Attributes:
        name: The level as configured (``demographics+labs``, ``center:0.5``, ``all``).
        known_groups: What it knows: feature groups (every group for ``all``), or the record's
            known parts in words (``centre 14×14 px``, ``leads I, II``).
        imputation: How the attacker forms a query; None for ``all`` (the record itself).
        inputs: ``(n_records, *model_input_shape)`` the imputed pool already through the model's
            fixed front end, computed once (`dptrain.training.frontend`); None without one.
        frontend: The front end's name behind ``inputs``.
    """

    name: str
    known_groups: tuple[str, ...]
    imputation: Imputation | None = None
    inputs: np.ndarray | None = None
    frontend: str | None = None

    @property
    def full(self) -> bool:
        """Whether the attacker knows the whole record (no extra forward pass needed)."""
        return self.imputation is None

    @property
    def imputed_inputs(self) -> int:
        """Input values of a record replaced by the population's (0 for ``all``)."""
        return 0 if self.imputation is None else self.imputation.imputed_inputs

    def impute(self, records: np.ndarray) -> np.ndarray:
        """``records`` as this attacker queries a model with them (raw records)."""
        if self.imputation is None:
            return np.array(records, copy=True)
        return self.imputation.impute(records)

    def queries(self, records: Records) -> Records:
        """The model inputs of this attacker's queries of the pool whose inputs are ``records``."""
        if self.inputs is not None:
            return self.inputs
        return records if self.imputation is None else self.imputation.queries(records)


def knowledge_levels(
    cohort: Cohort,
    *,
    levels: Sequence[str],
    feature_groups: Mapping[str, Sequence[str]],
    raw_records: Records | None = None,
    frontend: object | None = None,
    layout: RecordLayout | None = None,
) -> tuple[KnowledgeLevel, ...]:
    """Resolves ``audit.knowledge`` against the cohort's feature columns, or its records' regions.

    Args:
        cohort: The audit pool. A table's features are named: levels are feature groups.
            Images and signals are not: levels are regions (`dptrain.audit.knowledge_regions`).
        levels: Level names: ``all``, feature-group names joined by ``+`` (tables), or record
            parts joined by ``+`` (``center:0.5``, ``lowres:7``, ``leads:I+II``, ``window:0-2.5``).
        feature_groups: Group name -> data columns (a numeric feature, or a one-hot encoded
            categorical column whose features are ``name=level``).
        raw_records: The pool's records before the model's fixed front end, when
            ``cohort.features`` are its output; the imputed records then go through
            ``frontend`` once here, as the pool's did.
        frontend: The model's fixed front end (`dptrain.models.model_frontend`), with
            ``raw_records``.
        layout: Lead names and sampling rate of signals (`record_layout`); None: unnamed.

    Returns:
        One level per name, in order (empty without levels).

    Raises:
        ConfigError: For an unknown group, a column that is not an input, or a region spec that
            is malformed or does not fit the records; each message names the level.

    Example:
        >>> cohort = Cohort.from_records(name="t", features=np.array([[1, 5], [3, 6], [2, 9]],
        ...     np.float32), labels=np.array([0, 1, 0]), patient_ids=np.array(["a", "b", "c"]),
        ...     feature_names=("age", "cd4"))
        >>> level = knowledge_levels(cohort, levels=["demo"], feature_groups={"demo": ["age"]})[0]
        >>> level.impute(cohort.features).tolist()
        [[1.0, 6.0], [3.0, 6.0], [2.0, 6.0]]
    """
    if not levels:
        return ()
    if not cohort.feature_names:
        return _region_levels(cohort, levels, raw_records, frontend, layout or RecordLayout())
    columns = {
        group: _group_columns(cohort, group, names) for group, names in feature_groups.items()
    }
    fills = _population_values(cohort)
    resolved = []
    for name in levels:
        known_groups = tuple(columns) if name == FULL_RECORD else tuple(name.split("+"))
        unknown_groups = [group for group in known_groups if group not in columns]
        if unknown_groups:
            raise ConfigError(
                f"audit.knowledge: {name!r} names feature group {unknown_groups[0]!r}, not one of "
                f"data.feature_groups {sorted(columns)} (or {FULL_RECORD!r})"
            )
        known = set().union(*(columns[group] for group in known_groups))
        unknown = (
            ()
            if name == FULL_RECORD
            else tuple(index for index in range(len(cohort.feature_names)) if index not in known)
        )
        resolved.append(
            KnowledgeLevel(
                name=name,
                known_groups=known_groups,
                imputation=(
                    ColumnImputation(
                        unknown_columns=unknown,
                        fill_values=tuple(float(fills[index]) for index in unknown),
                    )
                    if unknown
                    else None
                ),
            )
        )
    return tuple(resolved)


def run_knowledge_levels(
    *,
    levels: Sequence[str],
    feature_groups: Mapping[str, Sequence[str]],
    cohort: Cohort,
    raw_records: Records,
    model_factory: object,
    data_config: object,
) -> tuple[KnowledgeLevel, ...]:
    """`knowledge_levels` for a run: the front end and the signal layout found from its configs.

    Called before any training, so a bad level fails in seconds.

    Args:
        levels: ``audit.knowledge``.
        feature_groups: ``audit.feature_groups``.
        cohort: The pool as the models see it (after the front end, if the model has one).
        raw_records: The pool's records as loaded (the same as ``cohort.features`` without a
            front end).
        model_factory: The model config (its ``frontend``, if any, is applied to imputed records).
        data_config: The data config (lead names and sampling rate of signals).

    Returns:
        The resolved levels.
    """
    if not levels:
        return ()
    frontend = None
    if raw_records is not cohort.features:
        frontend = model_frontend(model_factory, record_shape(raw_records))
    return knowledge_levels(
        cohort,
        levels=levels,
        feature_groups=feature_groups,
        raw_records=raw_records if frontend is not None else None,
        frontend=frontend,
        layout=record_layout(data_config, raw_records),
    )


def knowledge_key(levels: Sequence[KnowledgeLevel]) -> str:
    """What a saved model's knowledge signals were computed for ("" without partial levels)."""
    partial = [level for level in levels if not level.full]
    if not partial:
        return ""
    return json.dumps(
        [[lv.name, *lv.imputation.key(), *([lv.frontend] if lv.frontend else [])] for lv in partial]
    )


def knowledge_signals(
    predict_signals: Callable[[Records], np.ndarray],
    features: Records,
    levels: Sequence[KnowledgeLevel],
) -> np.ndarray | None:
    """φ of every imputed pool record under one model, one row per partial level.

    Args:
        predict_signals: ``inputs -> (n_records,)`` φ of the true labels under one model.
        features: ``(n_records, ...)`` the pool's model inputs.
        levels: The knowledge levels; full ones (``all``) need no pass and get no row.

    Returns:
        ``(n_partial_levels, n_records)`` float64, or None without a partial level.
    """
    rows = [predict_signals(level.queries(features)) for level in levels if not level.full]
    return np.stack(rows).astype(np.float64) if rows else None


def _region_levels(
    cohort: Cohort,
    levels: Sequence[str],
    raw_records: Records | None,
    frontend: object | None,
    layout: RecordLayout,
) -> tuple[KnowledgeLevel, ...]:
    """Image and signal levels; with a front end, each imputed pool is transformed here, once."""
    records = cohort.features if raw_records is None else raw_records
    resolved = []
    for level in region_levels(levels, records=records, layout=layout, data_name=cohort.name):
        inputs = None
        if frontend is not None and level.imputation is not None:
            queries = level.imputation.queries(records)
            inputs = np.concatenate(
                [frontend.transform(chunk) for chunk in chunks(queries, FRONTEND_CHUNK)]
            ).astype(np.float32)
        resolved.append(
            KnowledgeLevel(
                name=level.name,
                known_groups=level.known_parts,
                imputation=level.imputation,
                inputs=inputs,
                frontend=None if inputs is None else frontend.name,
            )
        )
    return tuple(resolved)


@dataclass(frozen=True)
class KnowledgeRow:
    """Exposure of one subgroup (or the whole cohort) against one attacker.

    Attributes:
        attribute: Subgroup attribute (``all patients`` for the cohort row).
        value: Attribute value.
        n_patients: Patients in the subgroup.
        exposed: ``(n_thresholds,)`` patients whose AUC exceeds each threshold.
        exposed_interval: ``(n_thresholds, 2)`` Clopper–Pearson interval of ``exposed / n``.
        exposed_floor: ``(n_thresholds,)`` mean of ``exposed`` over the null re-labellings.
    """

    attribute: str
    value: str
    n_patients: int
    exposed: np.ndarray
    exposed_interval: np.ndarray
    exposed_floor: np.ndarray

    @property
    def share(self) -> np.ndarray:
        """``(n_thresholds,)`` exposed share of the subgroup's patients."""
        return (
            self.exposed / self.n_patients
            if self.n_patients
            else np.full_like(self.exposed, np.nan, dtype=np.float64)
        )


@dataclass(frozen=True)
class KnowledgeResult:
    """The per-patient audit against one attacker.

    Attributes:
        level: The level's name.
        known_groups: Feature groups (tables) or record parts (images, signals) it knows.
        imputed_features: Input values of a record (columns; pixels or samples) the attacker
            replaced by the population's.
        median_auc: Median patient AUC.
        p99_auc: 99th percentile of patient AUC.
        max_auc: Largest patient AUC.
        rows: The whole cohort first, then every value of every subgroup attribute.
    """

    level: str
    known_groups: tuple[str, ...]
    imputed_features: int
    median_auc: float
    p99_auc: float
    max_auc: float
    rows: tuple[KnowledgeRow, ...]

    @property
    def cohort(self) -> KnowledgeRow:
        """The whole-cohort row."""
        return self.rows[0]


@dataclass(frozen=True)
class KnowledgeCurve:
    """Exposure as a function of what the attacker knows, one result per level.

    Attributes:
        imputation: How unknown features (or regions) were filled, in words.
        thresholds: ``(n_thresholds,)`` patient AUC thresholds.
        confidence: Two-sided confidence of the intervals.
        repeats: Null re-labellings behind the floors.
        levels: One result per ``audit.knowledge`` entry, in order.
    """

    imputation: str
    thresholds: np.ndarray
    confidence: float
    repeats: int
    levels: tuple[KnowledgeResult, ...]


def knowledge_curve(
    *,
    levels: Sequence[KnowledgeLevel],
    signals: np.ndarray,
    knowledge_signals: np.ndarray | None,
    membership: np.ndarray,
    cohort: Cohort,
    thresholds: tuple[float, ...],
    aggregation: str,
    confidence: float,
    repeats: int,
    seed: int,
) -> KnowledgeCurve | None:
    """The audit's per-patient exposure against every knowledge level.

    Args:
        levels: The resolved levels.
        signals: ``(K, n_records)`` the audit's full-record signals (the ``all`` level's).
        knowledge_signals: ``(K, n_partial_levels, n_records)`` φ of the imputed records,
            partial levels in order; None when every level is full.
        membership: ``(K, n_patients)`` bool membership, models in complementary pairs.
        cohort: The audit pool.
        thresholds: Patient AUC thresholds.
        aggregation: ``max`` or ``mean`` over a patient's records, as the audit's.
        confidence: Confidence of the per-record bounds and two-sided intervals.
        repeats: Null re-labellings for the floors (≥ 1).
        seed: Seed of the null's re-labellings.

    Returns:
        The curve, or None without levels.

    Raises:
        ValueError: If ``knowledge_signals`` does not match the partial levels.
    """
    if not levels:
        return None
    partial = sum(not level.full for level in levels)
    expected = (len(membership), partial, cohort.n_records)
    shape = None if knowledge_signals is None else knowledge_signals.shape
    if partial and shape != expected:
        raise ValueError(f"knowledge_signals must have shape {expected}, got {shape}")
    record_membership = cohort.record_mask(membership)
    limits = np.asarray(thresholds, dtype=np.float64)
    results, next_partial = [], 0
    for offset, level in enumerate(levels):
        if level.full:
            level_signals = signals
        else:
            level_signals = knowledge_signals[:, next_partial]
            next_partial += 1
        risk = patient_risk(
            record_vulnerability(level_signals, record_membership, confidence=confidence),
            cohort,
            how=aggregation,
        )
        null_auc = _null_patient_auc(
            level_signals, membership, cohort, aggregation, repeats, [seed, 0x6B6E6F77, offset]
        )
        results.append(_level_result(level, risk.auc, null_auc, cohort, limits, confidence))
    return KnowledgeCurve(
        imputation=next(
            (level.imputation.description for level in levels if not level.full),
            "none: every level is the whole record",
        ),
        thresholds=limits,
        confidence=confidence,
        repeats=repeats,
        levels=tuple(results),
    )


def _level_result(
    level: KnowledgeLevel,
    auc: np.ndarray,
    null_auc: np.ndarray,
    cohort: Cohort,
    limits: np.ndarray,
    confidence: float,
) -> KnowledgeResult:
    # The same summaries as the full audit's `_patient_summary`, so `all` matches it exactly.
    valid = ~np.isnan(auc)
    groups = [(WHOLE_COHORT, WHOLE_COHORT, np.ones(len(auc), dtype=bool))]
    for attribute, values in cohort.attributes.items():
        groups += [(attribute, str(value), values == value) for value in np.unique(values)]
    rows = []
    with np.errstate(invalid="ignore"):
        for attribute, value, members in groups:
            exposed = (auc[members, None] > limits).sum(axis=0)
            floor = (null_auc[:, members, None] > limits).sum(axis=1)
            n = int(members.sum())
            rows.append(
                KnowledgeRow(
                    attribute=attribute,
                    value=value,
                    n_patients=n,
                    exposed=exposed,
                    exposed_interval=proportion_interval(exposed, n, confidence=confidence),
                    exposed_floor=floor.mean(axis=0).astype(np.float64),
                )
            )
    return KnowledgeResult(
        level=level.name,
        known_groups=level.known_groups,
        imputed_features=level.imputed_inputs,
        median_auc=float(np.nanmedian(auc)) if valid.any() else float("nan"),
        p99_auc=float(np.nanpercentile(auc, 99)) if valid.any() else float("nan"),
        max_auc=float(np.nanmax(auc)) if valid.any() else float("nan"),
        rows=tuple(rows),
    )


def _null_patient_auc(
    signals: np.ndarray,
    membership: np.ndarray,
    cohort: Cohort,
    aggregation: str,
    repeats: int,
    stream: list[int],
) -> np.ndarray:
    """``(repeats, n_patients)`` patient AUCs on membership-free, re-labelled signals."""
    relabellings = null_relabellings(
        signals=signals,
        membership=membership,
        record_patient=cohort.record_patient,
        patient_labels=cohort.patient_labels,
        aggregation=aggregation,
        repeats=repeats,
        rng=np.random.default_rng(stream),
    )
    return np.stack([auc for _, _, auc in relabellings])


def _group_columns(cohort: Cohort, group: str, names: Sequence[str]) -> set[int]:
    """Feature columns of one group: a named numeric feature, or a one-hot block ``name=*``."""
    index_of = {name: index for index, name in enumerate(cohort.feature_names)}
    found: set[int] = set()
    for name in names:
        if name in index_of:
            found.add(index_of[name])
            continue
        block = [i for i, f in enumerate(cohort.feature_names) if f.startswith(f"{name}=")]
        if not block:
            raise ConfigError(
                f"data.feature_groups.{group}: {name!r} is not an input feature of "
                f"{cohort.name!r} (neither a column nor one-hot columns {name}=<level>)"
            )
        found.update(block)
    return found


def _population_values(cohort: Cohort) -> np.ndarray:
    """``(n_features,)`` the value an attacker fills in for each column when they do not know it.

    The median of the pool's records for a numeric column; for a one-hot block (``name=level``
    columns) the indicator vector of the block's most frequent level, so an imputed record is
    still a valid encoding.
    """
    features = np.asarray(cohort.features, dtype=np.float64)
    with np.errstate(all="ignore"):
        fills = np.nanmedian(features, axis=0)
    blocks: dict[str, list[int]] = {}
    for index, name in enumerate(cohort.feature_names):
        if "=" in name:
            blocks.setdefault(name.split("=", 1)[0], []).append(index)
    for block in blocks.values():
        if len(block) < 2:
            continue
        most_frequent = block[int(np.nanargmax(np.nansum(features[:, block], axis=0)))]
        fills[block] = 0.0
        fills[most_frequent] = 1.0
    return fills
