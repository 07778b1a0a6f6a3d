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
