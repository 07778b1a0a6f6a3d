import dataclasses

import numpy as np
import pandas as pd
import pytest

from dptrain.data import builtin_path
from dptrain.data.fake import fake_ehr_table
from dptrain.data.tables import TableDataConfig, load_table
from dptrain.errors import ConfigError, DataError

ACTG = TableDataConfig(
    path=builtin_path("ACTG175.csv"),
    id_column="pidnum",
    label_columns=["cens"],
    name="actg175",
    exclude_columns=["Unnamed: 0", "days", "cd496", "r", "offtrt"],
    categorical_columns=["strat", "arms"],
    subgroup_columns=["race", "age"],
    subgroup_bins={"age": [0.0, 30.0, 40.0, 50.0, 120.0]},
    value_names={"race": {"0": "white", "1": "non-white"}},
)


def test_actg175_loads_with_patients_labels_and_subgroups():
    cohort = ACTG.load()
    assert (cohort.n_patients, cohort.n_records) == (2139, 2139)
    assert cohort.task == "binary"
    assert np.bincount(cohort.labels).tolist() == [1618, 521]
    assert not {"cens", "days", "cd496", "r", "offtrt", "pidnum"} & set(cohort.feature_names)
    assert {"arms=0", "arms=3", "strat=1"} <= set(cohort.feature_names)
    assert set(cohort.attributes["race"]) == {"white", "non-white"}
    assert set(cohort.attributes["age"]) <= {"0-30", "30-40", "40-50", "50-120"}


def test_patients_with_several_visits_keep_one_id(tmp_path):
    table = fake_ehr_table(n_patients=40, max_records_per_patient=4, seed=0)
    path = tmp_path / "visits.parquet"
    table.to_parquet(path)
    cohort = TableDataConfig(
        path=str(path),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex"],
        subgroup_columns=["sex"],
    ).load()
    assert cohort.n_patients == 40 and cohort.n_records == len(table)
    assert cohort.records_per_patient.max() > 1
    assert "site=north" in cohort.feature_names  # strings are one-hot encoded
    assert np.isnan(cohort.features).any()  # missing values stay missing until training


def test_integer_labels_are_remapped_to_class_indices(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "y": [1, 2, 2, 1], "x": [0.1, 0.2, 0.3, 0.4]}).to_csv(
        path, index=False
    )
    cohort = TableDataConfig(path=str(path), id_column="id", label_columns=["y"]).load()
    assert cohort.labels.tolist() == [0, 1, 1, 0]
    assert cohort.class_names == ("1", "2")


def test_multilabel_columns(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": [1, 2, 3], "a": [0, 1, 1], "b": [1, 1, 0], "x": [1.0, 2.0, 3.0]}).to_csv(
        path, index=False
    )
    cohort = TableDataConfig(path=str(path), id_column="id", label_columns=["a", "b"]).load()
    assert cohort.task == "multilabel"
    assert cohort.labels.tolist() == [[0, 1], [1, 1], [1, 0]]


def _write(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("frame", "changes", "error", "message"),
    [
        (None, {"path": "/does/not/exist.csv"}, DataError, r"data.path: file not found"),
        (
            {"id": [1, 2], "y": [0, 1]},
            {"label_columns": ["nope"]},
            DataError,
            r"data.label_columns: column 'nope' not in bad.csv",
        ),
        ({"id": [1, 2], "y": ["yes", "no"]}, {}, DataError, r"not numeric .*'yes'"),
        ({"id": [1, 2, 3], "y": [0, None, 1]}, {}, DataError, r"has 1 missing labels"),
        (
            {"id": [1, None, 3], "y": [0, 1, 1]},
            {},
            DataError,
            r"data.id_column: 1 rows .* no patient id",
        ),
        ({"id": [1, 2], "y": [0.5, 1.0]}, {}, DataError, r"non-integer labels"),
        ({"id": [1, 2], "y": [1, 1]}, {}, DataError, r"single class"),
        (
            {"id": [1, 2], "y": [0, 1]},
            {"id_column": "pid"},
            DataError,
            r"data.id_column: column 'pid'",
        ),
        (
            {"id": [1, 2], "y": [0, 1], "x": [1, 2]},
            {"feature_columns": ["x", "y"]},
            ConfigError,
            r"includes 'y'",
        ),
    ],
)
def test_bad_input_names_the_field_and_the_fix(tmp_path, frame, changes, error, message):
    frame = pd.DataFrame(frame or {"id": [1], "y": [0]}).assign(x=lambda f: 1.0)
    config = TableDataConfig(path=_write(tmp_path, frame), id_column="id", label_columns=["y"])
    config = dataclasses.replace(config, **changes)
    with pytest.raises(error, match=message) as raised:
        load_table(config)
    assert "\n" not in str(raised.value)


def test_unknown_file_type_is_rejected(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="neither CSV nor Parquet"):
        TableDataConfig(path=str(path), id_column="id", label_columns=["y"]).load()


def test_config_rejects_empty_labels_and_unsorted_bins():
    with pytest.raises(ConfigError, match="label_columns is empty"):
        TableDataConfig(path="x.csv", id_column="id", label_columns=[])
    with pytest.raises(ConfigError, match=r"subgroup_bins\.age"):
        TableDataConfig(
            path="x.csv", id_column="id", label_columns=["y"], subgroup_bins={"age": [50.0, 10.0]}
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subgroup_bins": {"age": [0.0, 40.0, 40.0, 120.0]}}, "strictly increasing"),
        ({"subgroup_bins": {"age": [0.0, 50.0]}, "subgroup_columns": ["sex"]}, "not a subgroup"),
    ],
)
def test_bins_that_cannot_mean_what_the_user_wants_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        TableDataConfig(path="x.csv", id_column="id", label_columns=["y"], **options)


def test_the_readme_table_command_composes(compose_config, tmp_path):
    from dptrain.cli.config import build_run_config

    run_config, _ = build_run_config(
        compose_config(
            [
                "data=table",
                f"data.path={tmp_path / 'visits.csv'}",
                "data.id_column=patient_id",
                "data.label_columns=[died]",
                "data.exclude_columns=[discharge_date]",
                "data.categorical_columns=[ward]",
                "data.subgroup_columns=[sex,race,insurance,age]",
                "+data.subgroup_bins={age:[0.0,40.0,65.0,120.0]}",
            ]
        )
    )
    assert run_config.data.subgroup_bins == {"age": [0.0, 40.0, 65.0, 120.0]}


def test_duplicate_column_names_are_refused_not_renamed(tmp_path):
    path = tmp_path / "dupes.csv"
    path.write_text("patient_id,label,x,label\nP1,0,1.0,0\nP2,1,2.0,1\n")
    with pytest.raises(DataError, match=r"dupes\.csv.*'label' twice"):
        TableDataConfig(path=str(path), id_column="patient_id", label_columns=["label"]).load()


@pytest.mark.parametrize("bad", ["inf", "1e300", "-inf"])
def test_non_finite_feature_values_are_refused_naming_the_column(tmp_path, bad):
    path = tmp_path / "huge.csv"
    rows = "\n".join(f"P{i},{i % 2},{i}.0,{bad if i == 3 else 1.0}" for i in range(6))
    path.write_text("patient_id,label,x,creatinine\n" + rows + "\n")
    with pytest.raises(DataError, match=r"creatinine.*1 row"):
        TableDataConfig(path=str(path), id_column="patient_id", label_columns=["label"]).load()


def test_a_typo_in_exclude_columns_stops_the_run(visits_csv):
    config = TableDataConfig(
        path=str(visits_csv),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["lenfoll"],
    )
    with pytest.raises(DataError, match=r"data\.exclude_columns: column 'lenfoll' not in"):
        config.load()


def test_the_label_mapping_is_stated_for_the_report(tmp_path):
    path = tmp_path / "signs.csv"
    rows = "\n".join(f"P{i},{(i % 3) - 1},{i}.0" for i in range(9))
    path.write_text("patient_id,outcome,x\n" + rows + "\n")
    cohort = TableDataConfig(
        path=str(path), id_column="patient_id", label_columns=["outcome"]
    ).load()
    assert cohort.task == "multiclass"
    assert "Labels of column 'outcome': -1 → class 0, 0 → class 1, 1 → class 2." in cohort.notes


def test_an_id_used_as_the_label_is_refused(tmp_path):
    path = tmp_path / "ids.csv"
    rows = "\n".join(f"P{i},{1000 + i},{i}.0" for i in range(60))
    path.write_text("patient_id,record_number,x\n" + rows + "\n")
    config = TableDataConfig(
        path=str(path), id_column="patient_id", label_columns=["record_number"]
    )
    with pytest.raises(DataError, match="looks like an id"):
        config.load()


def _rows(tmp_path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


LATIN1 = "pid,y,x,town\n" + "".join(f"P{i},{i % 2},{i}.0,Orléans\n" for i in range(6))


def test_a_latin1_csv_needs_its_encoding_and_then_loads(tmp_path):
    path = _rows(tmp_path, LATIN1, encoding="latin-1")
    config = TableDataConfig(path=path, id_column="pid", label_columns=["y"])
    with pytest.raises(DataError, match=r"t\.csv is not utf-8 text .*data\.encoding=latin-1"):
        config.load()
    cohort = dataclasses.replace(config, encoding="latin-1").load()
    assert "town=Orléans" in cohort.feature_names


def test_a_semicolon_file_read_as_one_column_gets_the_separator_hint(tmp_path):
    path = _rows(tmp_path, LATIN1.replace(",", ";"))
    config = TableDataConfig(path=path, id_column="pid", label_columns=["y"])
    with pytest.raises(DataError, match=r"read as one column .*data\.separator=semicolon"):
        config.load()
    assert dataclasses.replace(config, separator="semicolon").load().n_records == 6
    assert dataclasses.replace(config, separator=";").load().n_records == 6


def test_stray_text_in_a_numeric_column_is_refused_or_read_as_missing_with_a_count(tmp_path):
    values = [f"{i}.5" for i in range(19)] + ["unk"]
    frame = pd.DataFrame({"pid": range(20), "y": [0, 1] * 10, "creat": values})
    config = TableDataConfig(path=_write(tmp_path, frame), id_column="pid", label_columns=["y"])
    with pytest.raises(DataError, match=r"'creat' of bad.csv is numeric except 1 row.*'unk'"):
        config.load()
    cohort = dataclasses.replace(config, stray_text="missing").load()
    assert cohort.feature_names == ("creat",)  # one numeric column, not 20 one-hot columns
    assert np.isnan(cohort.features[19, 0]) and cohort.features[0, 0] == 0.5
    assert any("1 text value(s) ['unk'] read as missing" in note for note in cohort.notes)
    assert any("1 numeric, 0 one-hot" in note for note in cohort.notes)


def test_a_text_column_stays_categorical_and_its_levels_are_counted(tmp_path):
    frame = pd.DataFrame({"pid": range(6), "y": [0, 1] * 3, "ward": ["a", "b", "c"] * 2})
    cohort = TableDataConfig(
        path=_write(tmp_path, frame), id_column="pid", label_columns=["y"]
    ).load()
    assert cohort.feature_names == ("ward=a", "ward=b", "ward=c")
    assert "Feature columns: 0 numeric, 1 one-hot encoded (ward: 3 levels)." in cohort.notes


def test_text_labels_with_a_positive_label(tmp_path):
    frame = pd.DataFrame({"pid": range(4), "status": ["dead", "alive", "alive", "dead"]})
    config = TableDataConfig(
        path=_write(tmp_path, frame.assign(x=1.0)),
        id_column="pid",
        label_columns=["status"],
        positive_label="dead",
    )
    cohort = config.load()
    assert cohort.labels.tolist() == [1, 0, 0, 1] and cohort.class_names == ("alive", "dead")
    assert any("'dead' → class 1 (dead), 'alive' → class 0" in note for note in cohort.notes)
    with pytest.raises(DataError, match=r"positive_label='died'.*\['alive', 'dead'\]"):
        dataclasses.replace(config, positive_label="died").load()


def test_one_row_per_patient_without_an_id_column(tmp_path):
    frame = pd.DataFrame({"y": [0, 1, 0, 1], "x": [1.0, 2.0, 3.0, 4.0]})
    cohort = TableDataConfig(
        path=_write(tmp_path, frame), id_column=None, label_columns=["y"]
    ).load()
    assert cohort.n_patients == cohort.n_records == 4
    assert cohort.feature_names == ("x",)
    assert "Each row is its own patient (data.id_column=null)." in cohort.notes


def test_a_subgroup_that_varies_within_a_patient_is_kept_per_record(tmp_path):
    frame = pd.DataFrame(
        {
            "pid": ["a", "a", "b", "c"],
            "y": [0, 1, 0, 1],
            "x": [1.0, 2.0, 3.0, 4.0],
            "transplant": [0, 1, 0, 0],
        }
    )
    cohort = TableDataConfig(
        path=_write(tmp_path, frame),
        id_column="pid",
        label_columns=["y"],
        subgroup_columns=["transplant"],
        exclude_columns=["transplant"],
        min_subgroup_size=1,  # three patients: keep every value
    ).load()
    assert "transplant" not in cohort.attributes
    assert cohort.record_attributes["transplant"].tolist() == ["0", "1", "0", "0"]
    assert any("varies between the rows of 1 patient" in note for note in cohort.notes)


def test_bins_that_do_not_cover_the_data_are_refused_with_the_range(tmp_path):
    frame = pd.DataFrame({"pid": range(4), "y": [0, 1] * 2, "age": [20, 45, 70, 95]})
    config = TableDataConfig(
        path=_write(tmp_path, frame),
        id_column="pid",
        label_columns=["y"],
        subgroup_columns=["age"],
        subgroup_bins={"age": [18, 65, 90]},
    )
    with pytest.raises(DataError, match=r"1 row\(s\) have age outside \[18, 90\) .* 20 to 95"):
        config.load()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"encoding": "klingon"}, r"data\.encoding: unknown encoding"),
        ({"separator": ";;"}, r"data\.separator must be one character"),
        ({"stray_text": "zero"}, r"data\.stray_text must be one of"),
        ({"label_columns": ["a", "b"], "positive_label": "x"}, r"applies to one label column"),
        ({"subgroup_bins": {"age": ["young"]}}, r"must be a list of numbers"),
    ],
)
def test_new_table_options_are_validated_eagerly(options, message):
    with pytest.raises(ConfigError, match=message):
        TableDataConfig(**{"path": "x.csv", "id_column": "id", "label_columns": ["y"], **options})


def test_a_csv_named_parquet_and_a_parquet_named_csv_are_named(tmp_path):
    frame = pd.DataFrame({"id": [1, 2], "y": [0, 1]})
    frame.to_csv(tmp_path / "t.parquet", index=False)
    frame.to_parquet(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t\.parquet is not a readable Parquet file"):
        TableDataConfig(
            path=str(tmp_path / "t.parquet"), id_column="id", label_columns=["y"]
        ).load()
    with pytest.raises(DataError, match=r"t\.csv is a Parquet file, not CSV text"):
        TableDataConfig(path=str(tmp_path / "t.csv"), id_column="id", label_columns=["y"]).load()


def test_a_continuous_subgroup_is_binned_at_quartiles_and_no_value_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    bmi = rng.normal(27, 4, 200).round(2)
    bmi[7] = 123456.789  # a planted, unique value
    frame = pd.DataFrame({"pid": range(200), "y": [0, 1] * 100, "bmi": bmi, "x": rng.random(200)})
    cohort = TableDataConfig(
        path=_write(tmp_path, frame),
        id_column="pid",
        label_columns=["y"],
        subgroup_columns=["bmi"],
    ).load()
    bands = cohort.attributes["bmi"]
    assert len(set(bands)) == 4  # quartiles, not 200 one-patient "subgroups"
    assert all(30 <= count <= 70 for count in np.unique(bands, return_counts=True)[1])
    assert bands[list(cohort.patients).index("7")].startswith("≥")  # an open outer band
    for value in bmi:
        assert not any(f"{value:g}" in band or str(value) in band for band in bands)
    note = next(note for note in cohort.notes if "'bmi' is continuous" in note)
    assert "quartiles" in note and "123456" not in note and "data.subgroup_bins.bmi" in note


def test_few_level_numeric_subgroups_and_explicit_bins_are_not_requantised(tmp_path):
    frame = pd.DataFrame(
        {"pid": range(60), "y": [0, 1] * 30, "stage": [1, 2, 3] * 20, "age": range(20, 80)}
    )
    cohort = TableDataConfig(
        path=_write(tmp_path, frame),
        id_column="pid",
        label_columns=["y"],
        subgroup_columns=["stage", "age"],
        subgroup_bins={"age": [0, 50, 120]},
    ).load()
    assert sorted(set(cohort.attributes["stage"])) == ["1", "2", "3"]
    assert sorted(set(cohort.attributes["age"])) == ["0-50", "50-120"]
    assert not any("continuous" in note for note in cohort.notes)


@pytest.mark.parametrize("minimum", [5, 1])
def test_values_held_by_few_patients_are_merged_unnamed(tmp_path, minimum):
    site = ["north"] * 30 + ["south"] * 26 + ["rare-clinic-A"] * 2 + ["rare-clinic-B"] * 2
    frame = pd.DataFrame({"pid": range(60), "y": [0, 1] * 30, "site": site, "x": range(60)})
    cohort = TableDataConfig(
        path=_write(tmp_path, frame),
        id_column="pid",
        label_columns=["y"],
        subgroup_columns=["site"],
        exclude_columns=["site"],
        min_subgroup_size=minimum,
    ).load()
    values = set(cohort.attributes["site"])
    if minimum == 1:
        assert values == set(site)
        return
    assert values == {"north", "south", "other (n < 5)"}
    assert (cohort.attributes["site"] == "other (n < 5)").sum() == 4
    note = next(note for note in cohort.notes if "fewer than 5 patients" in note)
    assert "2 value(s)" in note and "rare-clinic" not in note


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_min_subgroup_size_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match=r"data.min_subgroup_size must be an integer >= 1"):
        TableDataConfig(path="t.csv", id_column="pid", label_columns=["y"], min_subgroup_size=bad)
