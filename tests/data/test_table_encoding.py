"""The feature encoding a table model carries reproduces the training features on new tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dptrain.data.table_encoding import FeatureEncoding
from dptrain.data.tables import TableDataConfig
from dptrain.errors import DataError


def _cohort(tmp_path, table: pd.DataFrame, **options):
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    config = TableDataConfig(path=str(path), id_column="id", label_columns=["y"], **options)
    return config.load()


def test_encoding_reproduces_the_training_features_whatever_the_column_order(tmp_path):
    table = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "y": [0, 1, 0, 1, 0, 1],
            "ward": [3, 1, np.nan, 1, 2, 3],  # a coded category, read as floats (a blank)
            "note": ["x", "y", "x", None, "z", "y"],  # text: one-hot
            "lab": ["1.5", "2", "", "4", "5", "6"],
        }
    )
    cohort = _cohort(tmp_path, table, categorical_columns=["ward"])
    encoding = cohort.preprocessing.encoding
    assert encoding.feature_names == cohort.feature_names
    assert dict(encoding.categorical_levels) == {"ward": ("1", "2", "3"), "note": ("x", "y", "z")}

    reread = pd.read_csv(tmp_path / "train.csv")
    features, report = encoding.encode(reread[reread.columns[::-1]], source="new.csv")
    np.testing.assert_array_equal(features, cohort.features)
    assert report.unknown_levels == {} and report.text_as_missing == {}

    integers = pd.DataFrame({"ward": [1, 3], "note": ["z", "w"], "lab": [7, 8]})  # no blank now
    features, report = encoding.encode(integers, source="new.csv")
    names = list(cohort.feature_names)
    assert features[0, names.index("ward=1.0")] == 1.0 and features[1, names.index("ward=3.0")] == 1
    assert features[1, [names.index(f"note={v}") for v in "xyz"]].tolist() == [0.0, 0.0, 0.0]
    assert report.unknown_levels == {"note": 1}


def test_encoding_round_trips_through_plain_values_and_refuses_missing_columns(tmp_path):
    table = pd.DataFrame(
        {"id": [1, 2, 3, 4], "y": [0, 1, 1, 0], "a": [1.0, 2, 3, 4], "s": list("ppqq")}
    )
    encoding = _cohort(tmp_path, table).preprocessing.encoding
    assert FeatureEncoding.from_plain(encoding.to_plain()) == encoding
    assert encoding.to_plain()["label_mapping"] == {"0": 0, "1": 1}
    with pytest.raises(DataError, match=r"new\.csv lacks 1 feature column\(s\) .*: 's'"):
        encoding.encode(pd.DataFrame({"a": [1.0]}), source="new.csv")
    with pytest.raises(DataError, match=r"column 'a' of new\.csv has 1 row\(s\) with an infinite"):
        encoding.encode(pd.DataFrame({"a": [np.inf], "s": ["p"]}), source="new.csv")
