"""The standing bad-input corpus: every malformed config or data file a user has tried.

Each case writes its input in a real on-disk format (CSV, Parquet, MedMNIST ``.npz``, an image
folder with its metadata CSV, WFDB records), runs the real ``dptrain`` command in this process and
asserts what a user must see: exit status 2, exactly one line on stderr that names the field or
the file (and the fix), no traceback, and no ``results.json`` in the run directory. Every case
fails before training, so the module runs in seconds. It grows with every loader: add a case
here for each new way input can be wrong.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dptrain.cli import main as cli
from dptrain.data.fake import (
    fake_ehr_table,
    write_fake_image_folder,
    write_fake_medmnist_npz,
    write_fake_mitbih,
    write_fake_ptbxl,
)

from ..conftest import FAST, table_overrides
from .test_main import KEEP_LOGGING

Case = Callable[[Path], list[str]]


def invoke(monkeypatch, capsys, run_dir: Path, overrides: list[str]) -> tuple[int, str]:
    """Runs ``dptrain <overrides>`` in this process; returns (exit status, stderr)."""
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        overrides = [*overrides, f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", ["dptrain", *overrides, *KEEP_LOGGING])
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- tables


def _table(tmp_path: Path, n_patients: int = 30) -> pd.DataFrame:
    del tmp_path
    return fake_ehr_table(n_patients=n_patients, max_records_per_patient=2, seed=0)


def _csv(tmp_path: Path, frame: pd.DataFrame | None = None, name: str = "visits.csv") -> Path:
    path = tmp_path / name
    (_table(tmp_path) if frame is None else frame).to_csv(path, index=False)
    return path


def _run(path: Path, *extra: str) -> list[str]:
    """A table run over ``path`` with the fake table's columns, then ``extra`` overrides."""
    return [*table_overrides(path), *FAST, "audit=none", *extra]


def _good(tmp_path: Path, *extra: str) -> list[str]:
    return _run(_csv(tmp_path), *extra)


def _edit(edit: Callable[[pd.DataFrame], pd.DataFrame], *extra: str) -> Case:
    """A case whose table is the fake one changed by ``edit``."""
    return lambda tmp_path: _run(_csv(tmp_path, edit(_table(tmp_path))), *extra)


def _text(text: str, name: str, *extra: str, encoding: str = "utf-8") -> Case:
    """A case whose file holds exactly ``text`` (as a user's export might)."""

    def build(tmp_path: Path) -> list[str]:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return _run(path, *extra)

    return build


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[row, column] = value
        return frame

    return edit


ROWS = "".join(f"P{i},{i % 2},{i}.5,M\n" for i in range(12))


def _parquet_named_csv(tmp_path: Path) -> list[str]:
    path = tmp_path / "visits.csv"
    _table(tmp_path).to_parquet(path)
    return _run(path)


def _csv_named_parquet(tmp_path: Path) -> list[str]:
    path = tmp_path / "visits.parquet"
    _table(tmp_path).to_csv(path, index=False)
    return _run(path)


def _parquet_with_a_non_utf8_column_name(tmp_path: Path) -> list[str]:
    path = tmp_path / "visits.parquet"
    _table(tmp_path).rename(columns={"x0": "cafeX"}).to_parquet(path)
    data = path.read_bytes()
    # Same length, so the footer's lengths stay right: "cafeX" becomes "caf\xe9X" (Latin-1 é).
    path.write_bytes(data.replace(b"cafeX", b"caf\xe9X"))
    return _run(path)


def _parquet_without_the_label(tmp_path: Path) -> list[str]:
    path = tmp_path / "visits.parquet"
    _table(tmp_path).drop(columns="label").to_parquet(path)
    return _run(path)


def _parquet_with_inf(tmp_path: Path) -> list[str]:
    path = tmp_path / "visits.parquet"
    _table(tmp_path).assign(x3=lambda f: f["x3"].where(f.index != 4, np.inf)).to_parquet(path)
    return _run(path)


# ---------------------------------------------------------------- config and the run directory


def _override(*extra: str) -> Case:
    return lambda tmp_path: _good(tmp_path, *extra)


def _without(*keys: str) -> Case:
    def build(tmp_path: Path) -> list[str]:
        return [o for o in _good(tmp_path) if not o.startswith(keys)]

    return build


def _run_dir_under_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder")
    return _good(tmp_path, f"hydra.run.dir={tmp_path / 'afile' / 'run'}")


def _locked_run_dir(tmp_path: Path) -> list[str]:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".dptrain.lock").write_text(str(os.getpid()))  # a live holder
    return _good(tmp_path)


# ---------------------------------------------------------------- MedMNIST .npz


def _npz(tmp_path: Path, **changes) -> list[str]:
    path = write_fake_medmnist_npz(tmp_path / "toy.npz", n_train=12, n_val=4, n_test=6, seed=0)
    arrays = dict(np.load(path))
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return ["data=medmnist", "data.name=toy", f"data.path={path}", "model=cnn", *FAST]


def _npz_junk(tmp_path: Path) -> list[str]:
    path = tmp_path / "junk.npz"
    path.write_text("not a zip archive")
    return ["data=medmnist", "data.name=junk", f"data.path={path}", *FAST]


# ---------------------------------------------------------------- image folder + CSV


def _folder(tmp_path: Path, edit=None, *extra: str) -> list[str]:
    metadata = write_fake_image_folder(
        tmp_path / "images", n_patients=6, max_images_per_patient=2, size=8, seed=0
    )
    if edit is not None:
        edit(metadata)
    return [
        "data=image_folder",
        f"data.path={metadata}",
        "data.path_column=path",
        "data.id_column=patient_id",
        "data.label_columns=[label]",
        "data.size=8",
        "model=cnn",
        *FAST,
        *extra,
    ]


def _drop_image(metadata: Path) -> None:
    frame = pd.read_csv(metadata)
    (metadata.parent / frame["path"][1]).unlink()


def _corrupt_image(metadata: Path) -> None:
    frame = pd.read_csv(metadata)
    (metadata.parent / frame["path"][0]).write_bytes(b"\x89PNG broken")


def _varying_patient_sex(metadata: Path) -> None:
    frame = pd.read_csv(metadata)
    frame.loc[frame["patient_id"] == frame["patient_id"].value_counts().index[0], "sex"] = [
        "F",
        "M",
    ]
    frame.to_csv(metadata, index=False)


# ---------------------------------------------------------------- WFDB (PTB-XL, MIT-BIH)


def _ptbxl(tmp_path: Path, breaker=None) -> list[str]:
    root = tmp_path / "ptbxl"
    write_fake_ptbxl(root, n_patients=4, max_ecgs_per_patient=1, seconds=2.0, seed=0)
    if breaker is not None:
        breaker(root)
    return ["data=ptbxl", f"data.root={root}", *FAST]


def _mitbih(tmp_path: Path, breaker=None, *extra: str) -> list[str]:
    root = tmp_path / "mitdb"
    write_fake_mitbih(root, records=["100", "101"], seconds=8.0, seed=0)
    if breaker is not None:
        breaker(root)
    return ["data=mitbih", f"data.root={root}", "data.records=[100,101]", *FAST, *extra]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# ---------------------------------------------------------------- the corpus

CORPUS: list = [
    # The command line: keys, types, groups, override syntax.
    ("typo_key", _override("privacy.epsilom=3"), "unknown config key privacy.epsilom"),
    ("typo_key_plus", _override("+privacy.epsilom=3"), "unknown config key privacy.epsilom"),
    ("typo_group_plus", _override("+trian.epochs=3"), "unknown config key 'trian'"),
    ("typo_top_level", _override("dat=table"), "unknown config key 'dat'"),
    ("wrong_type_float", _override("privacy.epsilon=abc"), "privacy.epsilon: Value 'abc'"),
    ("wrong_type_int", _override("train.epochs=many"), "train.epochs: Value 'many'"),
    ("not_a_list", _override("data.label_columns=label"), "write a list, e.g. data.label_colu"),
    ("unknown_option", _override("privacy=dpp"), "unknown option privacy=dpp; valid options"),
    ("unknown_data_option", _override("data=tabel"), "valid options of data: actg175"),
    ("unknown_experiment", _override("experiment=nope"), "valid options of experiment"),
    ("tilde_unquoted", _override("data.path=~/visits.csv"), "'data.path=\"~/visits.csv\"'"),
    ("override_without_value", _override("privacy.epsilon"), "write it as key=value"),
    ("unclosed_list", _override("data.exclude_columns=[sex"), "'data.exclude_columns=[sex'"),
    ("ambiguous_comma", _override("data.exclude_columns=sex,age"), "use key=[value1,value2]"),
    ("no_data_path", _without("data.path="), "data.path is required"),
    ("no_id_column", _without("data.id_column="), "data.id_column is required"),
    ("no_label_columns", _without("data.label_columns="), "data.label_columns is required"),
    ("empty_label_columns", _override("data.label_columns=[]"), "data.label_columns is empty"),
    # Privacy and split values.
    ("epsilon_negative", _override("privacy.epsilon=-1"), "privacy.epsilon must be > 0"),
    ("epsilon_absurd", _override("privacy.epsilon=1e9"), "privacy=none"),
    ("delta_range", _override("privacy.delta=2"), "privacy.delta must be in (0, 1)"),
    (
        "delta_above_1_over_n",
        _override("privacy.delta=0.1", "train.batch_size=8"),
        "is not below 1/N",
    ),
    ("empty_split", _override("split.test_fraction=0.001"), "split.test_fraction=0.001"),
    # Early stopping: its validation patients come out of the (30-patient) table's training split.
    (
        "validation_fraction_range",
        _override("train.early_stopping=true", "train.validation_fraction=0.8"),
        "train.validation_fraction must be in (0, 0.5]",
    ),
    (
        "validation_metric_unknown",
        _override("train.early_stopping=true", "train.validation_metric=f1"),
        "train.validation_metric must be one of ['loss', 'auroc']",
    ),
    (
        "validation_too_few_patients",
        _override("train.early_stopping=true", "train.validation_fraction=0.01"),
        "early stopping needs at least one validation patient of each class",
    ),
    # Column lists checked against the table.
    ("exclude_typo", _override("data.exclude_columns=[lenfoll]"), "column 'lenfoll' not in"),
    ("categorical_typo", _override("data.categorical_columns=[sitee]"), "column 'sitee' not in"),
    ("subgroup_typo", _override("data.subgroup_columns=[sexx]"), "column 'sexx' not in"),
    ("feature_is_label", _override("data.feature_columns=[x0,label]"), "includes 'label'"),
    ("id_column_typo", _override("data.id_column=pid"), "data.id_column: column 'pid'"),
    (
        "bins_not_subgroup",
        _override("+data.subgroup_bins={age:[0.0,50.0,120.0]}"),
        "data.subgroup_bins.age: 'age' is not a subgroup column",
    ),
    (
        "bins_repeated_edge",
        _override("data.subgroup_columns=[age]", "data.subgroup_bins={age:[0,40,40,120]}"),
        "remove repeated edges",
    ),
    (
        "bins_not_covering",
        _override("data.subgroup_columns=[age]", "data.subgroup_bins={age:[30,60,70]}"),
        "data.subgroup_bins.age: ",
    ),
    (
        "bins_not_numbers",
        _override("data.subgroup_columns=[age]", "data.subgroup_bins={age:[young,old]}"),
        "data.subgroup_bins.age must be a list of numbers",
    ),
    ("bad_encoding_name", _override("data.encoding=klingon"), "data.encoding: unknown encoding"),
    ("bad_stray_text_option", _override("data.stray_text=zero"), "data.stray_text must be one"),
    # The table file itself.
    ("missing_file", _override("data.path=/no/such/visits.csv"), "data.path: file not found"),
    (
        "missing_file_home",
        _override('data.path="~/no/such/visits.csv"'),
        f"file not found: {Path.home()}/no/such/visits.csv",
    ),
    ("empty_file", _text("", "visits.csv"), "visits.csv is empty"),
    (
        "header_only",
        _text("patient_id,label,x0,sex,age\n", "visits.csv"),
        "has a header but no rows",
    ),
    ("unknown_suffix", _text("a,b\n", "visits.xlsx"), "is neither CSV nor Parquet"),
    (
        "duplicate_header",
        _text("patient_id,label,x0,label,sex\n" + "P1,0,1.0,0,M\nP2,1,2.0,1,F\n", "visits.csv"),
        "'label' twice",
    ),
    (
        "latin1_csv",
        _text(
            "patient_id,label,x0,sex,ville\n" + ROWS.replace(",M", ",M,Orléans"),
            "v.csv",
            encoding="latin-1",
        ),
        "data.encoding=latin-1",
    ),
    (
        "semicolon_csv",
        _text("patient_id;label;x0;sex\n" + ROWS.replace(",", ";"), "v.csv"),
        "data.separator=semicolon",
    ),
    (
        "ragged_rows",
        _text("patient_id,label,x0,sex\nP1,0,1.0,M\nP2,1,2.0,F,extra,more\n", "v.csv"),
        "cannot read v.csv as CSV",
    ),
    ("parquet_named_csv", _parquet_named_csv, "visits.csv is a Parquet file, not CSV text"),
    ("csv_named_parquet", _csv_named_parquet, "visits.parquet is not a readable Parquet file"),
    (
        "parquet_non_utf8_name",
        _parquet_with_a_non_utf8_column_name,
        "visits.parquet has a column name that is not UTF-8",
    ),
    ("parquet_missing_label", _parquet_without_the_label, "column 'label' not in visits.parquet"),
    ("parquet_inf", _parquet_with_inf, "feature column 'x3' has 1 row"),
    # Values in the table.
    ("inf_feature", _edit(_set("x1", 3, "inf")), "feature column 'x1' has 1 row"),
    ("overflow_feature", _edit(_set("x1", 3, 1e300)), "beyond float32's range"),
    ("stray_text", _edit(_set("x2", 5, "unk")), "column 'x2' of visits.csv is numeric except 1"),
    (
        "text_labels",
        _edit(lambda f: f.assign(label=np.where(f.label == 1, "dead", "alive"))),
        "data.positive_label=",
    ),
    (
        "positive_label_absent",
        _edit(
            lambda f: f.assign(label=np.where(f.label == 1, "dead", "alive")),
            "data.positive_label=died",
        ),
        "data.positive_label='died'",
    ),
    ("nan_label", _edit(_set("label", 2, np.nan)), "has 1 missing labels"),
    ("single_class", _edit(lambda f: f.assign(label=1)), "has a single class"),
    ("fractional_labels", _edit(lambda f: f.assign(label=f.label * 0.5)), "non-integer labels"),
    (
        "missing_patient_id",
        _edit(_set("patient_id", 1, np.nan)),
        "1 rows of visits.csv have no patient id",
    ),
    (
        "id_as_label",
        _edit(lambda f: f.assign(record=np.arange(len(f))), "data.label_columns=[record]"),
        "looks like an id",
    ),
    (
        "multilabel_not_binary",
        _edit(lambda f: f.assign(other=2), "data.label_columns=[label,other]"),
        "must hold only 0 and 1",
    ),
    # MedMNIST .npz.
    (
        "npz_missing",
        lambda t: ["data=medmnist", "data.name=toy", f"data.path={t / 'toy.npz'}", *FAST],
        "toy.npz",
    ),
    ("npz_junk", _npz_junk, "junk.npz as a .npz archive"),
    (
        "npz_missing_key",
        lambda t: _npz(t, train_images=None),
        "toy.npz has no array 'train_images'",
    ),
    (
        "npz_label_count",
        lambda t: _npz(t, test_labels=np.zeros(5, np.uint8)),
        "toy.npz has 6 test_images but 5",
    ),
    (
        "npz_negative_label",
        lambda t: _npz(t, val_labels=np.array([0, 1, 0, -1])),
        "val_labels has a negative label",
    ),
    # Image folder + metadata CSV.
    ("folder_missing_image", lambda t: _folder(t, _drop_image), "(missing)"),
    ("folder_corrupt_image", lambda t: _folder(t, _corrupt_image), "are missing or unreadable"),
    (
        "folder_path_column_typo",
        lambda t: _folder(t, None, "data.path_column=file"),
        "data.path_column: column 'file' not in metadata.csv",
    ),
    (
        "folder_patient_subgroup_varies",
        lambda t: _folder(t, _varying_patient_sex, "data.patient_subgroup_columns=[sex]"),
        "varies within patient",
    ),
    # WFDB: PTB-XL and MIT-BIH.
    (
        "ptbxl_no_database",
        lambda t: ["data=ptbxl", f"data.root={t}", *FAST],
        "ptbxl_database.csv not found",
    ),
    (
        "ptbxl_missing_signal",
        lambda t: _ptbxl(t, lambda r: (r / "records100/00000/00002_lr.dat").unlink()),
        "00002_lr.dat is listed in ptbxl_database.csv but missing",
    ),
    (
        "mitbih_missing_record",
        lambda t: _mitbih(t, None, "data.records=[100,999]"),
        "999.hea not found",
    ),
    (
        "mitbih_truncated_signal",
        lambda t: _mitbih(t, lambda r: _truncate(r / "101.dat")),
        "record 101: wfdb cannot read",
    ),
    ("mitbih_unknown_lead", lambda t: _mitbih(t, None, "data.leads=[V5]"), "has no lead 'V5'"),
    # Partial-knowledge attackers of images and signals (resolved before any training).
    (
        "knowledge_center_range",
        lambda t: [*_npz(t), "audit.knowledge=[center:1.5,all]"],
        "audit.knowledge: 'center:1.5': center:1.5 must be a fraction in (0, 1]",
    ),
    (
        "knowledge_lowres_too_large",
        lambda t: [*_npz(t), "audit.knowledge=[lowres:64]"],
        "lowres:64 is larger than the 28×28 images",
    ),
    (
        "knowledge_leads_on_images",
        lambda t: [*_npz(t), "audit.knowledge=[leads:I]"],
        "leads: applies to signals",
    ),
    (
        "knowledge_unknown_lead",
        lambda t: [*_ptbxl(t), "audit.knowledge=[leads:I+V7,all]"],
        "unknown lead 'V7'; the leads are I, II, III",
    ),
    (
        "knowledge_window_past_end",
        lambda t: [*_ptbxl(t), "audit.knowledge=[window:0-5]"],
        "window ends at 5 s but the records last 2 s",
    ),
    (
        "knowledge_unknown_kind",
        lambda t: _mitbih(t, None, "audit.knowledge=[qrs:1]"),
        "unknown kind 'qrs'",
    ),
    (
        "knowledge_unknown_group",
        _override("audit=leave_many_out", "audit.knowledge=[genes]"),
        "audit.knowledge: 'genes' names feature group 'genes'",
    ),
    # MIMIC-IV demo admissions.
    (
        "mimic_no_files",
        lambda t: ["data=mimic_iv_demo", f"data.root={t}", *FAST],
        "admissions.csv not found; put the MIMIC-IV",
    ),
    (
        "mimic_bad_label",
        lambda t: ["data=mimic_iv_demo", f"data.root={t}", "data.label=sepsis", *FAST],
        "data.label must be one of ['home', 'died']",
    ),
    # Patient-level DP-SGD and the DP audits.
    (
        "patient_cap_zero",
        _override("privacy.unit=patient", "privacy.max_records_per_patient=0"),
        "privacy.max_records_per_patient must be >= 1 record (null: no cap)",
    ),
    (
        "patient_batch_above_patients",
        _override("privacy.unit=patient", "train.batch_size=1000"),
        "expected patients per batch is more than the",
    ),
    (
        "patient_unit_with_ghost",
        _override("privacy.unit=patient", "privacy.grad_sample_mode=ghost"),
        "privacy.unit=patient needs privacy.grad_sample_mode in",
    ),
    ("dp_audit_unknown", _override("audit.dp_audits=[tight]"), "audit.dp_audits must name"),
    ("canary_kind_unknown", _override("audit=canary", "audit.canary_kind=x"), "canary_kind"),
    # The run directory.
    (
        "run_dir_under_a_file",
        _run_dir_under_a_file,
        "hydra.run.dir: cannot create the run directory",
    ),
    ("run_dir_in_use", _locked_run_dir, "is in use by process"),
]


@pytest.mark.parametrize(("build", "message"), [pytest.param(b, m, id=c) for c, b, m in CORPUS])
def test_bad_input_is_one_line_exit_2_and_no_results(monkeypatch, capsys, tmp_path, build, message):
    overrides = build(tmp_path)
    run_dir = tmp_path / "run"
    code, err = invoke(monkeypatch, capsys, run_dir, overrides)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("dptrain: error: ") and "Traceback" not in err
    assert message in lines[0]
    assert not re.search(r"np\.\w+\(", lines[0]), "a NumPy repr is not for users"
    assert not (run_dir / "results.json").exists()
    shutil.rmtree(run_dir, ignore_errors=True)


def test_the_corpus_covers_every_loader_and_stays_large():
    """The corpus is the project's memory of bad input: it may grow, never shrink."""
    names = [name for name, _, _ in CORPUS]
    assert len(names) == len(set(names)) and len(names) >= 60
    for prefix in ("npz_", "folder_", "ptbxl_", "mitbih_", "mimic_", "parquet_", "run_dir_"):
        assert any(name.startswith(prefix) for name in names), prefix
