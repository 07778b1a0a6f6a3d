import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from dptrain.reporting.markdown import number
from dptrain.reporting.results import read_results, to_plain


@dataclass(frozen=True)
class Example:
    value: float
    arrays: np.ndarray
    hidden: np.ndarray = field(default=None, metadata={"json": False})


def test_plain_values_are_strict_json_and_big_arrays_stay_out():
    plain = to_plain(Example(value=float("inf"), arrays=np.array([np.nan, 1.5]), hidden=np.ones(3)))
    assert plain == {"value": "inf", "arrays": [None, 1.5]}
    json.dumps(plain, allow_nan=False)


def test_results_round_trip_infinity_and_reject_incomplete_files(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": "1",
                "status": "complete",
                "privacy": {"epsilon": "inf", "delta": 1e-5},
            }
        )
    )
    assert math.isinf(read_results(path)["privacy"]["epsilon"])
    path.write_text(json.dumps({"schema_version": "1", "status": "running"}))
    with pytest.raises(ValueError, match="not a complete dptrain results file"):
        read_results(path)


def test_numbers_in_tables():
    assert number(0.8567) == "0.857"
    assert number(float("nan")) == "n/a" and number(None) == "n/a"
    assert number(float("inf")) == "∞" and number(12) == "12"
