"""Partial-knowledge attackers of images and signals: specs, imputation, and a planted leak."""

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.knowledge import knowledge_key, knowledge_levels
from dptrain.audit.knowledge_regions import (
    TWELVE_LEADS,
    ImputedRecords,
    Leads,
    RecordLayout,
    TimeWindow,
    parse_region_level,
    record_layout,
)
from dptrain.data.cohort import Cohort
from dptrain.data.mitbih import MITBIHDataConfig
from dptrain.data.preprocessing import ImageNormalize
from dptrain.data.ptbxl import PTBXLDataConfig
from dptrain.data.records import chunks
from dptrain.errors import ConfigError
from dptrain.models.scattering import ScatteringFrontend
from dptrain.reporting.attacker_markdown import knowledge_section

from .simulate import memoriser_audit, non_private_spend

N_PATIENTS, N_MODELS = 60, 16
SIGNAL_LAYOUT = RecordLayout(channel_names=TWELVE_LEADS, sampling_hz=10.0)  # 50 samples: 5 s
AUDIT = AuditConfig(
    num_models=N_MODELS, workers=1, rmia_num_population=50, min_models_for_patients=8,
    null_repeats=5,
)  # fmt: skip
SPEND = non_private_spend(n_units=N_PATIENTS)


def image_cohort() -> Cohort:
    """Random 8×8 grey images, one per patient, with a sex attribute."""
    rng = np.random.default_rng(5)
    ids = np.array([f"p{i}" for i in range(N_PATIENTS)])
    return Cohort.from_records(
        name="scans",
        features=rng.integers(0, 256, (N_PATIENTS, 1, 8, 8), dtype=np.uint8),
        labels=rng.integers(0, 2, N_PATIENTS),
        patient_ids=ids,
        attributes={"sex": {pid: "MF"[i % 2] for i, pid in enumerate(ids)}},
        preprocessing=ImageNormalize(),
    )


def signal_cohort() -> Cohort:
    """Random 12-lead, 5 s signals at 10 Hz, one per patient."""
    rng = np.random.default_rng(6)
    ids = np.array([f"p{i}" for i in range(N_PATIENTS)])
    return Cohort.from_records(
        name="ecgs",
        features=rng.normal(size=(N_PATIENTS, 12, 50)).astype(np.float32),
        labels=rng.integers(0, 2, N_PATIENTS),
        patient_ids=ids,
        attributes={"age": {pid: ["<60", "60+"][i % 3 == 0] for i, pid in enumerate(ids)}},
    )


# ------------------------------------------------------------------------ specs and imputation


def test_specs_parse_into_typed_parts_and_leads_listed_together_merge():
    assert parse_region_level("all").full
    assert parse_region_level("leads:I+II+V1").parts == (Leads(("I", "II", "V1")),)
    assert parse_region_level("leads:I,aVR").parts == (Leads(("I", "aVR")),)
    assert parse_region_level("window:0-2.5+leads:V1").parts == (
        TimeWindow(0.0, 2.5),
        Leads(("V1",)),
    )


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("center:1.5", "center:1.5 must be a fraction in (0, 1]"),
        ("center:0", "must be a fraction in (0, 1]"),
        ("center:half", "center:half must be a fraction of the image side"),
        ("lowres:0", "lowres:0 must be a whole number of pixels >= 1"),
        ("lowres:2.5", "must be a whole number of pixels"),
        ("lowres:2+lowres:4", "at most one lowres"),
        ("window:3-1", "window:3-1 must be <start>-<end> in seconds"),
        ("window:soon", "window:soon must be <start>-<end>"),
        ("crop:0.5", "unknown kind 'crop'"),
        ("demographics", "'demographics' names no kind"),
        ("leads:", "leads: needs a value"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_level(level, message):
    with pytest.raises(ConfigError) as error:
        parse_region_level(level)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert f"audit.knowledge: {level!r}" in str(error.value)


@pytest.mark.parametrize(
    ("make", "level", "message"),
    [
        (signal_cohort, "leads:V7", "unknown lead 'V7'; the leads are I, II, III"),
        (signal_cohort, "window:4-6", "window ends at 6 s but the records last 5 s"),
        (signal_cohort, "center:0.5", "center: applies to images"),
        (image_cohort, "leads:I", "leads: applies to signals"),
        (image_cohort, "lowres:9", "lowres:9 is larger than the 8×8 images"),
    ],
)
def test_parts_that_do_not_fit_the_records_are_refused(make, level, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        knowledge_levels(make(), levels=[level, "all"], feature_groups={}, layout=SIGNAL_LAYOUT)


def test_unnamed_leads_and_an_unknown_rate_are_refused():
    cohort = signal_cohort()
    with pytest.raises(ConfigError, match="leads of these signals have no names"):
        knowledge_levels(cohort, levels=["leads:I"], feature_groups={})
    with pytest.raises(ConfigError, match="sampling rate of these signals is unknown"):
        knowledge_levels(cohort, levels=["window:0-1"], feature_groups={})


def test_a_centre_crop_keeps_the_centre_and_fills_the_rest_with_the_mean_image():
    cohort = image_cohort()
    crop, thumbnail, everything = knowledge_levels(
        cohort, levels=["center:0.5", "lowres:2", "all"], feature_groups={}
    )
    images = cohort.features
    mean = np.clip(np.rint(images.astype(np.float64).mean(axis=0)), 0, 255).astype(np.uint8)
    imputed = crop.impute(images)
    assert imputed.dtype == np.uint8
    np.testing.assert_array_equal(imputed[:, :, 2:6, 2:6], images[:, :, 2:6, 2:6])
    outside = np.ones((8, 8), bool)
    outside[2:6, 2:6] = False
    np.testing.assert_array_equal(imputed[:, 0][:, outside], np.tile(mean[0][outside], (60, 1)))
    assert crop.imputed_inputs == 64 - 16 and crop.known_groups == ("centre 4×4 px",)
    # A thumbnail keeps each 4×4 block's mean (up to 8-bit rounding), not its pixels.
    small = thumbnail.impute(images).astype(float).reshape(60, 2, 4, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(small, images.astype(float).reshape(60, 2, 4, 2, 4).mean((2, 4)),
                               atol=0.5)  # fmt: skip
    assert not (thumbnail.impute(images) == images).all()
    assert everything.full and everything.imputed_inputs == 0


def test_leads_and_windows_keep_their_samples_and_take_the_rest_from_the_mean_signal():
    cohort = signal_cohort()
    (level,) = knowledge_levels(
        cohort, levels=["leads:ii+window:1-2"], feature_groups={}, layout=SIGNAL_LAYOUT
    )
    signals, mean = cohort.features, cohort.features.mean(axis=0)
    imputed = level.impute(signals)
    np.testing.assert_array_equal(imputed[:, 1], signals[:, 1])  # lead II, any case
    np.testing.assert_array_equal(imputed[:, :, 10:20], signals[:, :, 10:20])  # 1-2 s at 10 Hz
    np.testing.assert_allclose(imputed[:, 0, :10], np.tile(mean[0, :10], (60, 1)), rtol=1e-6)
    assert level.imputed_inputs == 12 * 50 - 50 - 11 * 10
    assert level.known_groups == ("lead ii", "1–2 s")


def test_the_imputed_pool_is_read_lazily_in_chunks_with_the_same_values():
    cohort = image_cohort()
    (level,) = knowledge_levels(cohort, levels=["center:0.5"], feature_groups={})
    queries = level.queries(cohort.features)
    assert isinstance(queries, ImputedRecords) and queries.shape == cohort.features.shape
    np.testing.assert_array_equal(np.concatenate(list(chunks(queries, 7))),
                                  level.impute(cohort.features))  # fmt: skip
    np.testing.assert_array_equal(queries.subset(np.array([3, 1])).read(np.array([1])),
                                  level.impute(cohort.features[[1]]))  # fmt: skip


def test_with_a_front_end_the_imputed_records_are_transformed_once_like_the_pool():
    cohort = image_cohort()
    frontend = ScatteringFrontend((1, 8, 8), J=1, L=4)
    transformed = frontend.transform(cohort.features)
    pool = Cohort.from_records(
        name="scans", features=transformed, labels=cohort.labels, patient_ids=cohort.patient_ids
    )
    crop, everything = knowledge_levels(
        pool,
        levels=["center:0.5", "all"],
        feature_groups={},
        raw_records=cohort.features,
        frontend=frontend,
    )
    assert crop.inputs.shape == transformed.shape and everything.inputs is None
    np.testing.assert_array_equal(crop.inputs, frontend.transform(crop.impute(cohort.features)))
    assert crop.queries(transformed) is crop.inputs
    assert frontend.name in knowledge_key([crop, everything])


def test_data_configs_name_their_leads_and_rates():
    ptbxl = record_layout(PTBXLDataConfig(resample_hz=50), np.zeros((2, 12, 500), np.float32))
    assert ptbxl == RecordLayout(channel_names=TWELVE_LEADS, sampling_hz=50.0)
    beats = np.zeros((2, 1, 252), np.float32)  # [0.25, 0.45] s at 360 Hz
    assert record_layout(MITBIHDataConfig(), beats) == RecordLayout(("MLII",), 360.0)
    assert record_layout(object(), np.zeros((2, 1, 8, 8), np.uint8)) == RecordLayout()


# ------------------------------------------------------------------ a planted, region-local leak


def memoriser(training: np.ndarray, region: tuple):
    """φ of a model that recognises a member by the exact values of one region of the record."""
    seen = training[(slice(None), *region)].reshape(len(training), -1)

    def predict(records) -> np.ndarray:
        records = np.concatenate(list(chunks(records, 16)))
        values = records[(slice(None), *region)].reshape(len(records), -1)
        known = (values[:, None] == seen[None]).all(axis=2).any(axis=1)
        return 0.01 * records.reshape(len(records), -1)[:, 0].astype(float) + 3.0 * known

    return predict


def planted_curve(cohort: Cohort, levels: list[str], region: tuple):
    resolved = knowledge_levels(cohort, levels=levels, feature_groups={}, layout=SIGNAL_LAYOUT)
    result = memoriser_audit(
        cohort,
        resolved,
        lambda training: memoriser(training, region),
        audit=AUDIT,
        num_models=N_MODELS,
        spend=SPEND,
    )
    shares = [
        level.cohort.exposed[0] / level.cohort.n_patients for level in result.knowledge.levels
    ]
    return result, shares


def test_an_image_leak_in_the_centre_is_exposed_only_by_attackers_who_know_the_centre():
    centre = (slice(None), slice(2, 6), slice(2, 6))
    result, shares = planted_curve(image_cohort(), ["lowres:2", "center:0.5", "all"], centre)
    assert shares == [0.0, 1.0, 1.0]
    corner = (slice(None), slice(0, 2), slice(0, 2))
    _, shares = planted_curve(image_cohort(), ["center:0.5", "all"], corner)
    assert shares == [0.0, 1.0]  # the crop does not hold the memorised corner
    everything = result.knowledge.levels[-1]
    text = knowledge_section(result)
    assert "| lowres:2 | 2×2 thumbnail | 64 |" in text and "pool's mean record" in text
    assert "| center:0.5 | centre 4×4 px | 48 |" in text
    assert "the audit's attacker" in text and "sex = F" in text
    assert everything.median_auc == result.patients.median_auc
    assert everything.max_auc == result.patients.max_auc
    np.testing.assert_array_equal(everything.cohort.exposed, result.patients.exposed)


def test_a_signal_leak_in_one_lead_grows_with_the_leads_known():
    lead_v1 = (6, slice(None))
    levels = ["window:0-2.5", "leads:I", "leads:I+II+V1", "all"]
    result, shares = planted_curve(signal_cohort(), levels, lead_v1)
    assert shares == [0.0, 0.0, 1.0, 1.0]
    for position in range(len(result.knowledge.levels[0].rows)):
        exposed = [level.rows[position].exposed[0] for level in result.knowledge.levels]
        assert np.all(np.diff(exposed) >= 0)
    first_second = (slice(None), slice(0, 10))
    _, shares = planted_curve(signal_cohort(), ["window:2-5", "window:0-1", "all"], first_second)
    assert shares == [0.0, 1.0, 1.0]
    subgroups = {(row.attribute, row.value): row for row in result.subgroups}
    for row in result.knowledge.levels[-1].rows:
        expected = subgroups[(row.attribute, row.value)].share_above
        np.testing.assert_array_equal(row.exposed / row.n_patients, expected)
