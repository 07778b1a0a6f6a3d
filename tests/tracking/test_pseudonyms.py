import os
import stat

import pandas as pd
import pytest

from dptrain.errors import ConfigError
from dptrain.reporting.results import read_results
from dptrain.tracking.local import CsvTrackerConfig
from dptrain.tracking.pseudonyms import PatientIdGuard, pseudonym_key, pseudonymise

from ..cli.test_main import run_app
from ..conftest import FAST, table_overrides


class Recorder:
    def __init__(self):
        self.tables = {}

    def log_table(self, name, table):
        self.tables[name] = table


def test_key_is_created_once_owner_only_and_pseudonyms_are_stable(tmp_path):
    key = pseudonym_key(tmp_path)
    assert pseudonym_key(tmp_path) == key and len(key) == 32
    mode = stat.S_IMODE(os.stat(tmp_path / "pseudonym.key").st_mode)
    assert mode == 0o600
    ids = pd.Series(["P1", "P2", "P1"])
    names = pseudonymise(ids, key)
    assert names[0] == names[2] != names[1] and not set(names) & {"P1", "P2"}
    assert pseudonymise(ids, b"another key")[0] != names[0]


@pytest.mark.parametrize(("mode", "expected"), [("pseudonymised", "hashed"), ("raw", "P1")])
def test_guard_sends_pseudonyms_or_raw_ids_by_choice(mode, expected):
    recorder = Recorder()
    table = pd.DataFrame({"patient_id": ["P1"], "auc": [0.9]})
    PatientIdGuard(recorder, mode, b"key").log_table("patient_risk", table)
    sent = recorder.tables["patient_risk"]["patient_id"][0]
    assert (sent.startswith("p-") and sent != "P1") if expected == "hashed" else sent == "P1"
    assert table["patient_id"][0] == "P1"  # the caller's table is untouched


def test_guard_none_sends_no_patient_table_and_bad_modes_are_refused():
    recorder = Recorder()
    PatientIdGuard(recorder, "none", b"").log_table(
        "patient_risk", pd.DataFrame({"patient_id": []})
    )
    assert recorder.tables == {}
    with pytest.raises(ConfigError, match=r"tracker\.patient_ids must be one of"):
        CsvTrackerConfig(patient_ids="hashed")


@pytest.mark.slow
def test_no_raw_patient_id_reaches_the_tracker_folder(monkeypatch, capsys, tmp_path, visits_csv):
    run_dir = tmp_path / "run"
    overrides = [*table_overrides(visits_csv), *FAST, "tracker=csv"]
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    ids = set(pd.read_csv(run_dir / "patient_risk.csv")["patient_id"].astype(str))
    sent = pd.read_csv(run_dir / "tracker" / "patient_risk.csv")["patient_id"].astype(str)
    assert len(sent) == len(ids) and not ids & set(sent)
    assert read_results(run_dir / "results.json")["status"] == "complete"
