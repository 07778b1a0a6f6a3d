"""ECG loaders (PTB-XL, MIT-BIH beats) on tiny WFDB files written with wfdb, and one ECG run."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from dptrain.audit.config import AuditConfig
from dptrain.data.fake import write_fake_mitbih, write_fake_ptbxl
from dptrain.data.locate import DEFAULT_DATA_DIR
from dptrain.data.mitbih import MITBIHDataConfig
from dptrain.data.ptbxl import PTBXLDataConfig
from dptrain.data.signals import bandpass, preprocess
from dptrain.data.splits import balanced_membership_masks, official_split
from dptrain.errors import ConfigError, DataError
from dptrain.models.ecg import CNN1DConfig
from dptrain.pipeline import RunConfig, run
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore::Warning")
SHARED_PTBXL = DEFAULT_DATA_DIR / "ecg" / "ptbxl"
SHARED_MITDB = DEFAULT_DATA_DIR / "ecg" / "mitdb"


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ptbxl")
    write_fake_ptbxl(root, n_patients=30, max_ecgs_per_patient=3, undiagnosed=2, seed=4)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


# ---------------------------------------------------------------- PTB-XL


def test_ptbxl_reads_signals_labels_patients_and_subgroups(ptbxl_root):
    cohort = PTBXLDataConfig(root=str(ptbxl_root), bandpass_hz=[]).load()
    table = pd.read_csv(ptbxl_root / "ptbxl_database.csv")
    kept = table.iloc[2:]  # the first two ECGs have no diagnostic code
    assert cohort.n_records == len(kept) and cohort.features.shape[1:] == (12, 1000)
    assert cohort.features.dtype == np.float32
    first = wfdb.rdsamp(str(ptbxl_root / kept["filename_lr"].iloc[0]))[0]
    np.testing.assert_allclose(cohort.features[0], first.T, atol=1e-6)  # no filter: raw mV
    expected = {"NORM": "NORM", "IMI": "MI", "NDT": "STTC", "LAFB": "CD", "LVH": "HYP"}
    for row, label in zip(kept["scp_codes"], cohort.labels):
        classes = {expected[c] for c in ast.literal_eval(row) if c in expected}
        assert {name for name, on in zip(cohort.class_names, label) if on} == classes
    assert cohort.task == "multilabel"
    assert any("2 of" in note and "no diagnostic superclass" in note for note in cohort.notes)
    assert cohort.patient_ids.tolist() == kept["patient_id"].map(lambda v: str(int(v))).tolist()
    assert set(cohort.attributes["sex"]) <= {"male", "female"}
    assert cohort.attributes["age"][0] == "80-120"  # PTB-XL's 300 (> 89 years) counts as 90
    assert set(cohort.record_attributes) == {"site", "device", "strat_fold"}
    assert cohort.official_split is None
    binary = PTBXLDataConfig(root=str(ptbxl_root), task="binary").load()
    abnormal = [
        any(c != "NORM" for c in {expected[c] for c in ast.literal_eval(r) if c in expected})
        for r in kept["scp_codes"]
    ]
    assert binary.task == "binary" and binary.labels.tolist() == [int(a) for a in abnormal]


def test_ptbxl_official_split_follows_strat_fold(ptbxl_root):
    cohort = PTBXLDataConfig(root=str(ptbxl_root), split="official").load()
    folds = pd.Series(cohort.record_attributes["strat_fold"].astype(int))
    expected = folds.map(lambda f: "train" if f <= 8 else "val" if f == 9 else "test")
    assert cohort.official_split[cohort.record_patient].tolist() == expected.tolist()
    split = official_split(cohort)
    assert set(split.train.record_attributes["strat_fold"].astype(int)) <= set(range(1, 9))
    assert set(split.test.record_attributes["strat_fold"]) == {"10"}


def test_ptbxl_refuses_a_patient_in_two_folds(ptbxl_root, tmp_path):
    root = _copy(ptbxl_root, tmp_path)
    table = pd.read_csv(root / "ptbxl_database.csv")
    several = table["patient_id"].value_counts().index[0]
    rows = table.index[table["patient_id"] == several]
    table.loc[rows[-1], "strat_fold"] = table.loc[rows[0], "strat_fold"] % 10 + 1
    table.to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(DataError, match=f"patient {int(several)} has ECGs in 2 different"):
        PTBXLDataConfig(root=str(root)).load()


def test_ptbxl_subsample_keeps_whole_patients(ptbxl_root):
    full = PTBXLDataConfig(root=str(ptbxl_root)).load()
    cohort = PTBXLDataConfig(root=str(ptbxl_root), max_records=20, seed=1).load()
    assert 10 < cohort.n_records <= 20
    counts = dict(zip(full.patients, full.records_per_patient))
    assert all(counts[p] == n for p, n in zip(cohort.patients, cohort.records_per_patient))
    again = PTBXLDataConfig(root=str(ptbxl_root), max_records=20, seed=1).load()
    assert again.patients.tolist() == cohort.patients.tolist()


def _break_missing(root: Path, ecg: str) -> None:
    (root / f"{ecg}.dat").unlink()


def _break_truncated(root: Path, ecg: str) -> None:
    data = (root / f"{ecg}.dat").read_bytes()
    (root / f"{ecg}.dat").write_bytes(data[: len(data) // 2])


def _break_leads(root: Path, ecg: str) -> None:
    signal, fields = wfdb.rdsamp(str(root / ecg))
    path = root / ecg
    wfdb.wrsamp(
        path.name,
        fs=fields["fs"],
        units=["mV"] * 11,
        sig_name=fields["sig_name"][:11],
        p_signal=signal[:, :11],
        fmt=["16"] * 11,
        write_dir=str(path.parent),
    )


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_break_missing, r"ECG 5: .*00005_lr.dat is listed in ptbxl_database.csv but missing"),
        (_break_truncated, r"ECG 5: wfdb cannot read .*header and the .dat file disagree"),
        (_break_leads, r"ECG 5 \(.*\) has 11 leads x 1000 samples .* same leads"),
    ],
)
def test_ptbxl_bad_records_fail_naming_the_record_or_are_counted(
    ptbxl_root, tmp_path, breaker, message
):
    root = _copy(ptbxl_root, tmp_path)
    breaker(root, "records100/00000/00005_lr")
    with pytest.raises(DataError, match=message) as error:
        PTBXLDataConfig(root=str(root)).load()
    assert "\n" not in str(error.value) and "on_bad_record=skip" in str(error.value)
    full = PTBXLDataConfig(root=str(ptbxl_root)).load()
    skipped = PTBXLDataConfig(root=str(root), on_bad_record="skip").load()
    assert skipped.n_records == full.n_records - 1
    assert any("1 ECGs were skipped" in n and "ECG 5" in n for n in skipped.notes)


def test_ptbxl_unknown_scp_code_is_an_error_or_a_count(ptbxl_root, tmp_path):
    root = _copy(ptbxl_root, tmp_path)
    table = pd.read_csv(root / "ptbxl_database.csv")
    table.loc[3, "scp_codes"] = "{'XYZ': 100.0}"
    table.to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(DataError, match=r"ECG 4 has SCP code 'XYZ', which scp_statements.csv"):
        PTBXLDataConfig(root=str(root)).load()
    skipped = PTBXLDataConfig(root=str(root), on_bad_record="skip").load()
    assert any("ECG 4 (unknown SCP code)" in note for note in skipped.notes)


def test_ptbxl_missing_files_and_bad_config(tmp_path):
    with pytest.raises(DataError, match=r"ptbxl_database.csv not found; download PTB-XL"):
        PTBXLDataConfig(root=str(tmp_path)).load()
    with pytest.raises(ConfigError, match="sampling_rate must be one of"):
        PTBXLDataConfig(sampling_rate=250)
    with pytest.raises(ConfigError, match=r"data.task must be one of"):
        PTBXLDataConfig(task="rhythm")
    with pytest.raises(ConfigError, match="bandpass_hz must be"):
        PTBXLDataConfig(bandpass_hz=[40, 0.5])


# ---------------------------------------------------------------- MIT-BIH beats


@pytest.fixture(scope="module")
def mitbih_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mitdb")
    write_fake_mitbih(root, records=["100", "101", "103", "201", "202"], seconds=40, seed=2)
    return root


def test_mitbih_cuts_annotated_beats_into_aami_classes(mitbih_root):
    config = MITBIHDataConfig(root=str(mitbih_root), bandpass_hz=[], leads=["MLII", "V1"])
    cohort = config.load()
    record = wfdb.rdrecord(str(mitbih_root / "101"))
    annotation = wfdb.rdann(str(mitbih_root / "101"), "atr")
    beats = [(s, x) for s, x in zip(annotation.sample, annotation.symbol) if x in "NAV"]
    mine = cohort.record_attributes["record"] == "101"
    assert mine.sum() == len(beats)  # '+' and '~' are not beats
    sample, symbol = beats[0]
    np.testing.assert_allclose(
        cohort.features[mine][0], record.p_signal[sample - 90 : sample + 162].T, atol=1e-6
    )  # 0.25 s before and 0.45 s after the R peak at 360 Hz
    assert cohort.class_names == ("N", "S", "V") and cohort.task == "multiclass"
    label = cohort.labels[mine][0]
    assert cohort.class_names[label] == {"N": "N", "A": "S", "V": "V"}[symbol]
    assert cohort.features.shape[1:] == (2, 252)
    # 201 and 202 are one subject: one patient, and the notes say so.
    assert sorted(cohort.patients.tolist()) == ["100", "101", "103", "201"]
    assert set(cohort.record_attributes["record"][cohort.patient_ids == "201"]) == {"201", "202"}
    assert any("201 and 202 come from one subject" in note for note in cohort.notes)
    assert any("A record-level ε protects one heartbeat" in note for note in cohort.notes)
    binary = MITBIHDataConfig(root=str(mitbih_root), classes="binary").load()
    assert binary.labels.tolist() == (cohort.labels != 0).astype(int).tolist()


def test_mitbih_patient_map_subsample_and_resampling(mitbih_root, tmp_path):
    mapping = tmp_path / "patients.csv"
    mapping.write_text("record,patient\n100,A\n101,A\n103,B\n201,C\n202,D\n")
    config = MITBIHDataConfig(
        root=str(mitbih_root), patient_map=str(mapping), max_beats_per_record=20, resample_hz=180
    )
    cohort = config.load()
    assert sorted(cohort.patients.tolist()) == ["A", "B", "C", "D"]
    assert cohort.records_per_patient.tolist() == [40, 20, 20, 20]
    assert cohort.features.shape[1:] == (1, 126)  # 0.7 s at 180 Hz
    mapping.write_text("record,patient\n100,A\n")
    with pytest.raises(DataError, match="record 101 has no row in"):
        config.load()


def test_mitbih_all_records_of_a_patient_share_membership_in_every_mask(mitbih_root):
    cohort = MITBIHDataConfig(root=str(mitbih_root)).load()
    masks = balanced_membership_masks(patient_labels=cohort.patient_labels, num_models=6, seed=0)
    record_masks = cohort.record_mask(masks)
    assert record_masks.shape == (6, cohort.n_records)
    for patient in range(cohort.n_patients):
        mine = record_masks[:, cohort.record_patient == patient]
        assert np.all(mine == mine[:, :1]) and mine.shape[1] > 20
        np.testing.assert_array_equal(mine[:, 0], masks[:, patient])


def test_mitbih_one_patient_falls_back_to_segments_with_a_loud_note(mitbih_root, tmp_path):
    cohort = MITBIHDataConfig(root=str(mitbih_root), records=["100"], segment_seconds=10).load()
    assert cohort.n_patients == 4 and all(p.startswith("100/segment") for p in cohort.patients)
    assert cohort.notes[0].startswith("WARNING: only 1 patient(s) (100)")
    assert "no patient-level privacy claim applies" in cohort.notes[0]
    with pytest.raises(DataError, match="1 patient\\(s\\); a patient-level split and audit need"):
        MITBIHDataConfig(root=str(mitbih_root), records=["100"], few_patients="error").load()


def test_mitbih_bad_records(mitbih_root, tmp_path):
    root = _copy(mitbih_root, tmp_path)
    with pytest.raises(DataError, match=r"record 999: .*999.hea not found; it is listed"):
        MITBIHDataConfig(root=str(root), records=["100", "999"]).load()
    annotation = wfdb.rdann(str(root / "103"), "atr")
    keep = np.array([s not in "NAV" for s in annotation.symbol])
    wfdb.wrann(
        "103",
        "atr",
        annotation.sample[keep],
        symbol=list(np.array(annotation.symbol)[keep]),
        write_dir=str(root),
    )
    with pytest.raises(DataError, match=r"record 103: .*103.atr has no beat annotations"):
        MITBIHDataConfig(root=str(root)).load()
    skipped = MITBIHDataConfig(root=str(root), on_bad_record="skip").load()
    assert any("1 records were skipped" in n and "103" in n for n in skipped.notes)
    assert "103" not in set(skipped.record_attributes["record"])
    with pytest.raises(DataError, match="record 100 has no lead 'V5'"):
        MITBIHDataConfig(root=str(root), leads=["V5"]).load()
    data = (root / "101.dat").read_bytes()
    (root / "101.dat").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="record 101: wfdb cannot read"):
        MITBIHDataConfig(root=str(root), records=["101"]).load()


def test_mitbih_differing_lead_counts_fail(tmp_path):
    write_fake_mitbih(tmp_path, records=["100"], seconds=10, leads=("MLII", "V1"), seed=0)
    write_fake_mitbih(tmp_path, records=["101"], seconds=10, leads=("MLII",), seed=1)
    with pytest.raises(DataError, match="record 101: 1 leads, the first record 2"):
        MITBIHDataConfig(root=str(tmp_path), leads=[]).load()


def test_signal_filters_are_scipys_and_checked():
    rate = 360.0
    time = np.arange(3600) / rate
    slow, beat = np.sin(2 * np.pi * 0.1 * time), np.sin(2 * np.pi * 15 * time)
    filtered = bandpass((slow + beat)[None], rate_hz=rate, band_hz=[0.5, 40], order=2)[0]
    assert np.abs(filtered[720:-720] - beat[720:-720]).max() < 0.05
    out, out_rate = preprocess(beat[None], rate_hz=rate, resample_hz=120, bandpass_hz=[], order=2)
    assert out.shape == (1, 1200) and out_rate == 120
    with pytest.raises(DataError, match="below the Nyquist frequency 60"):
        preprocess(beat[None], rate_hz=rate, resample_hz=120, bandpass_hz=[0.5, 80], order=2)


# ---------------------------------------------------------------- the shared real files


@pytest.mark.skipif(not SHARED_PTBXL.is_dir(), reason="shared PTB-XL copy not present")
def test_shared_ptbxl_subset_loads():
    cohort = PTBXLDataConfig(root=str(SHARED_PTBXL), split="official").load()
    assert cohort.features.shape == (488, 12, 1000)  # 500 ECGs, 12 without a superclass
    assert cohort.n_patients == 460 and cohort.records_per_patient.max() == 4
    assert cohort.labels.sum(axis=0).tolist() == [297, 73, 96, 78, 40]
    assert set(cohort.official_split) == {"train", "val", "test"}


@pytest.mark.skipif(not SHARED_MITDB.is_dir(), reason="shared MIT-BIH copy not present")
def test_shared_mitbih_record_100_loads():
    cohort = MITBIHDataConfig(root=str(SHARED_MITDB)).load()
    assert cohort.n_records == 2271  # 2,273 beats, the first and last too close to the edges
    assert cohort.summary()["label_counts"] == {"N": 2237, "S": 33, "V": 1}
    assert cohort.features.shape[1:] == (1, 252)
    assert cohort.notes[0].startswith("WARNING: only 1 patient(s) (100)")
    assert set(cohort.attributes["sex"]) == {"male"} and set(cohort.attributes["age"]) == {"60-80"}


# ---------------------------------------------------------------- one DP run with an audit


def test_dp_fit_and_patient_level_audit_on_fake_ecgs(ptbxl_root, tmp_path):
    report = run(
        RunConfig(
            data=PTBXLDataConfig(root=str(ptbxl_root), resample_hz=50, bandpass_hz=[0.5, 20]),
            model=CNN1DConfig(width=8, depth=2, kernel_sizes=[5], groups=4),
            privacy=PrivacyConfig(epsilon=8.0, unit="record"),
            train=TrainConfig(epochs=2, batch_size=16),
            audit=AuditConfig(num_models=4, rmia_num_population=20, workers=1),
        ),
        output_dir=tmp_path,
        progress=False,
    )
    assert report.privacy.epsilon <= 8.0 and report.training["grad_sample_mode"] == "functorch"
    assert report.data["cohort"]["max_records_per_patient"] == 3
    assert report.audit is not None and report.audit.bounds.group_size == 3
    assert report.audit.bounds.patient.max_auc >= report.audit.bounds.record.max_auc
    assert (tmp_path / "report.md").exists() and (tmp_path / "results.json").exists()
