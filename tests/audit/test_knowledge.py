"""Partial-knowledge attackers: imputation, the knowledge curve, and `all` = the full audit."""

import dataclasses

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.knowledge import knowledge_key, knowledge_levels
from dptrain.audit.run import run_audit
from dptrain.audit.store import ModelStore, ReferenceModelOutput
from dptrain.data.cohort import Cohort
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.reporting.attacker_markdown import harm_section, knowledge_section
from dptrain.reporting.plots import KNOWLEDGE_FILE, write_audit_plots
from dptrain.training.config import TrainConfig

from .simulate import memoriser_audit, non_private_spend

N_PATIENTS, N_MODELS, BLOCK = 60, 16, 20
GROUPS = {"demographics": ["sex", "age"], "labs": ["lab1", "lab2"], "block": ["site"]}
GROUPS["block"] += [f"r{i}" for i in range(BLOCK)]
LEVELS = ["demographics", "demographics+labs", "all"]
AUDIT = AuditConfig(
    num_models=N_MODELS,
    workers=1,
    rmia_num_population=50,
    min_models_for_patients=8,
    null_repeats=5,
    knowledge=LEVELS,
    feature_groups=GROUPS,
    severity={"sex": {"M": "high"}},
)

SPEND = non_private_spend(n_units=N_PATIENTS)


def planted_cohort() -> Cohort:
    """Demographics, two labs, a one-hot site and a high-dimensional random block per patient."""
    rng = np.random.default_rng(3)
    sex = rng.integers(0, 2, N_PATIENTS)
    site = np.eye(3)[rng.choice(3, N_PATIENTS, p=[0.2, 0.5, 0.3])]
    features = np.column_stack(
        [
            sex,
            rng.normal(50, 10, N_PATIENTS),
            rng.normal(size=(N_PATIENTS, 2)),
            site,
            rng.normal(size=(N_PATIENTS, BLOCK)),
        ]
    ).astype(np.float32)
    ids = np.array([f"p{i}" for i in range(N_PATIENTS)])
    names = ("sex", "age", "lab1", "lab2", "site=a", "site=b", "site=c")
    return Cohort.from_records(
        name="planted",
        features=features,
        labels=rng.integers(0, 2, N_PATIENTS),
        patient_ids=ids,
        attributes={"sex": {pid: "MF"[int(s)] for pid, s in zip(ids, sex)}},  # 0: M
        feature_names=names + tuple(f"r{i}" for i in range(BLOCK)),
    )


def memoriser(training: np.ndarray):
    """φ of a model that memorises its training records.

    It recognises a member by its random block (+3, any member) or by its labs (+2, sex 0 only),
    on top of a population term that every model shares; membership leaks only through labs and
    the random block, never through demographics.
    """
    labs, block = training[:, 2:4], training[:, 7:]

    def predict(features: np.ndarray) -> np.ndarray:
        seen_labs = (features[:, None, 2:4] == labs[None]).all(axis=2).any(axis=1)
        seen_block = (features[:, None, 7:] == block[None]).all(axis=2).any(axis=1)
        return 0.01 * features[:, 1] + 2.0 * (seen_labs & (features[:, 0] == 0)) + 3.0 * seen_block

    return predict


@pytest.fixture(scope="module")
def planted():
    cohort = planted_cohort()
    levels = knowledge_levels(cohort, levels=LEVELS, feature_groups=GROUPS)
    result = memoriser_audit(
        cohort, levels, memoriser, audit=AUDIT, num_models=N_MODELS, spend=SPEND
    )
    return cohort, levels, result


def test_unknown_features_take_the_population_value_and_one_hot_blocks_stay_valid():
    cohort = planted_cohort()
    level = knowledge_levels(cohort, levels=["demographics"], feature_groups=GROUPS)[0]
    imputed = level.impute(cohort.features)
    known = [0, 1]
    np.testing.assert_array_equal(imputed[:, known], cohort.features[:, known])
    np.testing.assert_allclose(imputed[:, 2], np.median(cohort.features[:, 2]))
    # The most frequent site (b, half the patients) for everyone: one 1 per imputed row.
    np.testing.assert_array_equal(imputed[:, 4:7], np.tile([0.0, 1.0, 0.0], (N_PATIENTS, 1)))
    assert level.imputed_inputs == cohort.features.shape[1] - 2
    full = knowledge_levels(cohort, levels=["all"], feature_groups=GROUPS)[0]
    assert full.full and knowledge_key([full]) == ""
    np.testing.assert_array_equal(full.impute(cohort.features), cohort.features)


def test_exposure_grows_with_knowledge_and_only_where_the_leak_is(planted):
    _, _, result = planted
    curve = result.knowledge
    shares = np.array([level.cohort.exposed[0] / level.cohort.n_patients for level in curve.levels])
    assert np.all(np.diff(shares) >= 0)
    assert shares[0] == 0.0  # demographics carry no membership signal
    assert shares[-1] == 1.0  # the random block identifies every member
    by_value = {row.value: row for row in curve.levels[1].rows[1:]}
    assert by_value["M"].exposed[0] == by_value["M"].n_patients  # labs leak for sex == 0 ("M")
    assert by_value["F"].exposed[0] == 0
    for position in range(len(curve.levels[0].rows)):
        exposed = [level.rows[position].exposed[0] for level in curve.levels]
        assert np.all(np.diff(exposed) >= 0)
    low, high = curve.levels[1].cohort.exposed_interval[0]
    assert low <= shares[1] <= high


def test_the_all_level_is_the_full_audit_exactly(planted):
    _, _, result = planted
    everything = result.knowledge.levels[-1]
    patients = result.patients
    assert everything.imputed_features == 0
    assert everything.median_auc == patients.median_auc
    assert everything.p99_auc == patients.p99_auc
    assert everything.max_auc == patients.max_auc
    np.testing.assert_array_equal(everything.cohort.exposed, patients.exposed)
    subgroups = {(row.attribute, row.value): row for row in result.subgroups}
    for row in everything.rows:
        expected = subgroups[(row.attribute, row.value)].share_above
        np.testing.assert_array_equal(row.exposed / row.n_patients, expected)


def test_the_report_and_the_plot_show_the_curve(planted, tmp_path):
    _, _, result = planted
    text = knowledge_section(result)
    assert "## What the attacker knows" in text
    assert "demographics+labs" in text and "sex = F" in text
    assert "unknown inputs replaced by the pool's median" in text
    assert "## Harm-weighted exposure" in harm_section(result)
    plots = write_audit_plots(result, tmp_path)
    assert plots["exposure_by_knowledge"] == tmp_path / KNOWLEDGE_FILE
    assert (tmp_path / KNOWLEDGE_FILE).stat().st_size > 0


def test_without_knowledge_the_audit_has_no_curve_and_no_plot(planted, tmp_path):
    cohort, _, result = planted
    plain = dataclasses.replace(result, knowledge=None)
    assert "exposure_by_knowledge" not in write_audit_plots(plain, tmp_path)
    assert knowledge_levels(cohort, levels=[], feature_groups=GROUPS) == ()


def test_knowledge_levels_refuse_unknown_groups_and_groups_of_images():
    images = Cohort.from_records(
        name="scans",
        features=np.zeros((2, 1, 4, 4), np.float32),
        labels=np.array([0, 1]),
        patient_ids=np.array(["a", "b"]),
    )
    with pytest.raises(ConfigError, match=r"'demographics' names no kind"):
        knowledge_levels(images, levels=["demographics", "all"], feature_groups=GROUPS)
    with pytest.raises(ConfigError, match=r"'genes'"):
        knowledge_levels(planted_cohort(), levels=["labs+genes"], feature_groups=GROUPS)
    with pytest.raises(ConfigError, match=r"'weight' is not an input feature"):
        knowledge_levels(planted_cohort(), levels=["all"], feature_groups={"demo": ["weight"]})
    with pytest.raises(ConfigError, match=r"audit\.knowledge must name distinct levels"):
        AuditConfig(knowledge=["labs", "labs"])


def test_the_store_keeps_knowledge_signals_under_their_key(tmp_path):
    store = ModelStore(tmp_path)
    output = ReferenceModelOutput(
        index=0,
        signals=np.zeros(3),
        privacy=SPEND,
        train_seconds=1.0,
        knowledge_signals=np.ones((2, 3)),
        knowledge_key="levels",
    )
    store.save(output, seed=1, fingerprint="f")
    loaded = store.load(0, fingerprint="f", knowledge_key="levels")
    np.testing.assert_array_equal(loaded.knowledge_signals, np.ones((2, 3)))
    assert store.load(0, fingerprint="f", knowledge_key="other levels") is None
    assert store.load(0, fingerprint="f").knowledge_signals is None


def test_audit_models_score_the_imputed_pool_and_resume_with_it(tmp_path):
    path = write_fake_ehr_table(
        tmp_path / "visits.csv", n_patients=40, max_records_per_patient=2, signal=0.5, seed=1
    )
    cohort = TableDataConfig(
        path=str(path),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex"],
        subgroup_columns=["sex"],
    ).load()
    numeric = [name for name in cohort.feature_names if "=" not in name]
    audit = AuditConfig(
        num_models=4,
        workers=1,
        attacks=["loss"],
        null_repeats=2,
        knowledge=["known", "all"],
        feature_groups={"known": numeric[:1]},
    )
    options = {
        "cohort": cohort,
        "model_factory": MLPConfig(hidden=[8]),
        "privacy": PrivacyConfig(mode="none"),
        "train": TrainConfig(epochs=1, batch_size=16),
        "audit": audit,
        "seed": 0,
        "output_dir": tmp_path,
    }
    first = run_audit(**options)
    again = run_audit(**options)
    assert again.models_reused == 4
    assert [level.level for level in first.knowledge.levels] == ["known", "all"]
    assert first.knowledge.levels[0].imputed_features == len(cohort.feature_names) - 1
    assert again.knowledge.levels[0].median_auc == first.knowledge.levels[0].median_auc
    assert first.knowledge.levels[1].median_auc == first.patients.median_auc


def test_exposed_patients_are_ranked_by_harm_in_the_csv_and_by_rank_only_in_the_report(planted):
    from dptrain.reporting.patients import patient_risk_frame

    cohort, _, result = planted
    frame = patient_risk_frame(result)
    listed = frame[frame["exposed_fdr"]]
    assert len(listed) > 0 and frame["harm_rank"].notna().sum() == len(listed)
    ranked = listed.sort_values("harm_rank")
    assert ranked["harm_rank"].tolist() == list(range(1, len(listed) + 1))
    assert ranked["harm_score"].is_monotonic_decreasing
    high = ranked["severity"] == "high"  # sex = M, rated high
    assert set(ranked.loc[high, "rated_as"]) == {"sex = M"}
    text = harm_section(result)
    assert "Exposed patients by harm" in text
    assert not any(f"| {pid} |" in text or f" {pid} " in text for pid in cohort.patient_ids)


def test_the_patient_table_with_harm_columns_is_a_valid_wandb_table(planted):
    """The default ACTG run once lost its W&B patient table: harm_rank was a nullable-integer
    column whose missing values W&B refuses."""
    wandb = pytest.importorskip("wandb")
    from dptrain.reporting.patients import patient_risk_frame

    _, _, result = planted
    rank = result.harm.patient_rank
    half_listed = np.where(np.arange(len(rank)) % 2 == 0, rank, 0)  # the others: not on the list
    result = dataclasses.replace(
        result, harm=dataclasses.replace(result.harm, patient_rank=half_listed)
    )
    frame = patient_risk_frame(result)
    assert frame["harm_rank"].isna().any() and frame["harm_rank"].notna().any()
    table = wandb.Table(dataframe=frame)
    assert len(table.data) == len(frame)
