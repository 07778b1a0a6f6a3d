"""`dptrain` on images, end to end and on bad input, through the real CLI (in-process)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dptrain.data.fake import write_fake_image_folder, write_fake_medmnist_npz
from dptrain.reporting.results import read_results

from ..conftest import FAST
from .test_main import run_app

TINY_IMAGE_RECIPE = [*FAST, "train.batch_size=16", "model.channels=[4,8]", "model.groups=2"]


def medmnist_overrides(path: Path) -> list[str]:
    return ["data=medmnist", "data.name=tinymnist", f"data.path={path}"]


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    return write_fake_medmnist_npz(
        tmp_path / "tinymnist.npz", n_train=60, n_val=10, n_test=30, size=28, seed=1
    )


@pytest.mark.slow
def test_a_dp_cnn_on_a_medmnist_file_trains_audits_and_reports(
    monkeypatch, capsys, tmp_path, tiny_npz
):
    run_dir = tmp_path / "run"
    overrides = [*medmnist_overrides(tiny_npz), "data.split=official", "model=cnn"]
    code, out, err = run_app(monkeypatch, capsys, run_dir, [*overrides, *TINY_IMAGE_RECIPE])
    assert code == 0, err
    assert "hooks" in out  # the CNN's measured default grad sample mode is named
    results = read_results(run_dir / "results.json")
    assert results["data"]["train"]["n_records"] == 60  # the official train split
    assert results["data"]["test"]["n_records"] == 30
    assert results["data"]["cohort"]["dtype"] == "uint8"
    assert results["training"]["grad_sample_mode"] == "hooks"
    assert results["training"]["device"] == "cpu"
    assert results["audit"]["num_models"] == 4
    report = (run_dir / "report.md").read_text()
    assert "its own patient" in report and "grad_sample_mode hooks" in report


@pytest.mark.slow
def test_scatternet_front_end_runs_once_and_the_head_trains(
    monkeypatch, capsys, tmp_path, tiny_npz
):
    run_dir = tmp_path / "run"
    code, _, err = run_app(
        monkeypatch, capsys, run_dir, [*medmnist_overrides(tiny_npz), "model=scatternet", *FAST]
    )
    assert code == 0, err
    results = read_results(run_dir / "results.json")
    assert results["training"]["frontend"].startswith("scattering2d")
    assert results["data"]["cohort"]["feature_shape"] == [81, 7, 7]
    assert "frontend" in results["timings"] or "frontend_seconds" in results["timings"]
    assert "fixed scattering2d" in (run_dir / "report.md").read_text()
    checkpoint = torch.load(run_dir / "model.pt", weights_only=True)
    assert checkpoint["frontend"].startswith("scattering2d")
    assert checkpoint["preprocessing"]["kind"] == "standardize"  # on the scattering features


@pytest.mark.slow
def test_image_folder_patients_with_several_images_stay_whole(monkeypatch, capsys, tmp_path):
    root = write_fake_image_folder(
        tmp_path / "images", n_patients=24, max_images_per_patient=3, size=16, seed=2
    )
    run_dir = tmp_path / "run"
    overrides = [
        "data=image_folder",
        f"data.path={root}",  # the writer returns the metadata CSV
        "data.path_column=path",
        "data.id_column=patient_id",
        "data.label_columns=[label]",
        "data.patient_subgroup_columns=[sex]",
        "data.record_subgroup_columns=[view]",
        "data.size=16",
        "data.augment=[hflip]",
        "model=cnn",
        *[o for o in TINY_IMAGE_RECIPE if not o.startswith("train.batch_size")],
        "train.batch_size=4",  # expected patients per batch: privacy.unit=auto is patient here
    ]
    code, _, err = run_app(monkeypatch, capsys, run_dir, overrides)
    assert code == 0, err
    results = read_results(run_dir / "results.json")
    assert results["data"]["cohort"]["max_records_per_patient"] > 1
    assert results["privacy"]["unit"] == "patient"
    assert {"sex", "view"} <= set(results["utility"]["subgroups"])
    leakage_rows = {row["attribute"] for row in results["audit"]["subgroups"]}
    assert {"all patients", "sex", "view (records)"} <= leakage_rows
    assert "view (records)" in (run_dir / "report.md").read_text()
    arrays = np.load(run_dir / "audit_arrays.npz")
    membership, record_patient = arrays["membership"], arrays["record_patient"]
    record_membership = membership[:, record_patient]
    for patient in np.unique(record_patient):  # all of a patient's images: one membership
        rows = record_membership[:, record_patient == patient]
        assert (rows == rows[:, :1]).all()
    assert (
        results["audit"]["bounds"]["group_size"]
        == results["data"]["cohort"]["max_records_per_patient"]
    )


BAD_NPZ = {
    "wrong keys": lambda path: np.savez(path, images=np.zeros((4, 28, 28), np.uint8)),
    "labels out of range": lambda path: np.savez(
        path,
        train_images=np.zeros((4, 28, 28), np.uint8),
        train_labels=np.array([0, 1, -1, 0]),
        val_images=np.zeros((2, 28, 28), np.uint8),
        val_labels=np.array([0, 1]),
        test_images=np.zeros((2, 28, 28), np.uint8),
        test_labels=np.array([0, 1]),
    ),
    "mixed sizes": lambda path: np.savez(
        path,
        train_images=np.zeros((4, 28, 28), np.uint8),
        train_labels=np.array([0, 1, 1, 0]),
        val_images=np.zeros((2, 64, 64), np.uint8),
        val_labels=np.array([0, 1]),
        test_images=np.zeros((2, 28, 28), np.uint8),
        test_labels=np.array([0, 1]),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_image_input_is_one_line_exit_2_and_no_results(monkeypatch, capsys, tmp_path, case):
    path = tmp_path / "bad.npz"
    BAD_NPZ[case](path)
    run_dir = tmp_path / "run"
    code, _, err = run_app(
        monkeypatch, capsys, run_dir, [*medmnist_overrides(path), *FAST, "audit=none"]
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.npz" in lines[0]
    assert not (run_dir / "results.json").exists()


def test_missing_medmnist_file_says_where_to_get_it(monkeypatch, capsys, tmp_path):
    code, _, err = run_app(
        monkeypatch, capsys, tmp_path / "run", [*medmnist_overrides(tmp_path / "none.npz")]
    )
    assert code == 2 and "zenodo" in err and "none.npz" in err


def test_batchnorm_weights_are_refused_with_the_fix(monkeypatch, capsys, tmp_path, tiny_npz):
    weights = tmp_path / "weights.pt"
    torch.save({"features.1.running_mean": torch.zeros(4)}, weights)
    code, _, err = run_app(
        monkeypatch,
        capsys,
        tmp_path / "run",
        [*medmnist_overrides(tiny_npz), "model=cnn", f"model.pretrained_path={weights}", *FAST],
    )
    assert code == 2 and "weights.pt" in err and "BatchNorm" in err
    assert not (tmp_path / "run" / "results.json").exists()
