import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from dptrain.data.fake import write_fake_image_folder, write_fake_medmnist_npz
from dptrain.data.image_folder import (
    ImageFolderDataConfig,
    LazyImageFiles,
    decode_image,
    load_image_folder,
)
from dptrain.data.locate import DEFAULT_DATA_DIR, shared_data_path
from dptrain.data.medmnist import MedMNISTDataConfig, load_medmnist
from dptrain.data.preprocessing import ImageNormalize
from dptrain.data.records import read
from dptrain.data.splits import balanced_membership_masks, official_split, split_by_patient
from dptrain.errors import ConfigError, DataError

# ---------------------------------------------------------------- MedMNIST .npz


def _npz(tmp_path, name="toy", **options):
    options = {"n_train": 12, "n_val": 4, "n_test": 6, **options}
    return write_fake_medmnist_npz(tmp_path / f"{name}.npz", **options)


def _rewrite(path: Path, **changes) -> Path:
    """Rewrites a .npz with some arrays replaced (None drops the key)."""
    arrays = dict(np.load(path))
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("channels", "size", "flat_labels"), [(1, 28, True), (1, 64, False), (3, 28, False)]
)
def test_medmnist_reads_images_channels_first_with_one_patient_per_image(
    tmp_path, channels, size, flat_labels
):
    path = _npz(tmp_path, channels=channels, size=size, flat_labels=flat_labels)
    cohort = MedMNISTDataConfig(name="toy", path=str(path)).load()
    arrays = np.load(path)
    expected = np.concatenate([arrays[f"{s}_images"] for s in ("train", "val", "test")])
    expected = expected[:, None] if channels == 1 else expected.transpose(0, 3, 1, 2)
    assert cohort.features.dtype == np.uint8
    assert cohort.features.shape == (22, channels, size, size)
    np.testing.assert_array_equal(cohort.features, expected)
    file_labels = np.concatenate([arrays[f"{s}_labels"] for s in ("train", "val", "test")])
    assert cohort.labels.tolist() == file_labels.reshape(-1).tolist()
    assert cohort.task == "binary" and cohort.class_names == ("0", "1")
    assert cohort.n_patients == cohort.n_records == 22
    assert cohort.patients[[0, 12, 16]].tolist() == ["train-000000", "val-000000", "test-000000"]
    assert (
        cohort.record_attributes["source_split"].tolist()
        == ["train"] * 12 + ["val"] * 4 + ["test"] * 6
    )
    assert any("own patient" in note for note in cohort.notes)
    assert cohort.official_split is None  # split=patient: our own split is drawn later
    assert isinstance(cohort.preprocessing, ImageNormalize)


def test_medmnist_multilabel_and_multiclass(tmp_path):
    multilabel = MedMNISTDataConfig(
        path=str(_npz(tmp_path, "multi", n_classes=3, multilabel=True))
    ).load()
    assert multilabel.task == "multilabel" and multilabel.labels.shape == (22, 3)
    assert multilabel.class_names == ("label_0", "label_1", "label_2")
    multiclass = MedMNISTDataConfig(path=str(_npz(tmp_path, "four", n_classes=4))).load()
    assert multiclass.task == "multiclass" and multiclass.n_classes == 4


def test_medmnist_official_split_is_honoured(tmp_path):
    cohort = MedMNISTDataConfig(path=str(_npz(tmp_path)), split="official").load()
    split = official_split(cohort)
    assert split.train.patients.tolist() == [f"train-{i:06d}" for i in range(12)]
    assert split.test.patients.tolist() == [f"test-{i:06d}" for i in range(6)]
    assert not any(p.startswith("val") for p in [*split.train.patients, *split.test.patients])


def test_medmnist_max_records_is_a_seeded_stratified_subsample(tmp_path):
    path = _npz(tmp_path, n_train=60, n_val=20, n_test=20)
    config = MedMNISTDataConfig(path=str(path), max_records=50, seed=3)
    first, again = config.load(), config.load()
    other = dataclasses.replace(config, seed=4).load()
    assert first.n_records == 50
    assert first.patients.tolist() == again.patients.tolist() != other.patients.tolist()
    splits = first.record_attributes["source_split"].tolist()
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (30, 10, 10)
    # Ids keep naming rows of the file.
    arrays = np.load(path)
    row = int(first.patients[-1].split("-")[1])
    np.testing.assert_array_equal(first.features[-1, 0], arrays["test_images"][row])
    assert any("subsample of 50 of the 100" in note for note in first.notes)


def test_medmnist_accepts_integer_pixels_in_range(tmp_path):
    path = _npz(tmp_path)
    original = np.load(path)["train_images"]
    _rewrite(path, train_images=original.astype(np.int64))
    cohort = load_medmnist(MedMNISTDataConfig(path=str(path)))
    assert cohort.features.dtype == np.uint8
    np.testing.assert_array_equal(cohort.features[:12, 0], original)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_images": None}, r"toy.npz has no array 'train_images'"),
        ({"val_images": np.zeros((4, 32, 32), np.uint8)}, r"toy.npz: val_images .* sizes"),
        ({"test_images": np.zeros((6, 28, 28, 3), np.uint8)}, r"toy.npz: test_images .*channels"),
        ({"val_labels": np.array([0, 1, 0, -1])}, r"toy.npz: val_labels has a negative label"),
        ({"val_labels": np.array([0, 1, 0.5, 1])}, r"toy.npz: val_labels holds non-integer"),
        ({"test_labels": np.zeros(5, np.uint8)}, r"toy.npz has 6 test_images but 5 test_labels"),
        (
            {"train_images": np.full((12, 28, 28), 300.0)},
            r"toy.npz: train_images \(float64\) is not 8-bit",
        ),
        ({"train_images": np.zeros((12, 28), np.uint8)}, r"toy.npz: train_images has shape"),
        ({"val_labels": np.full((4, 2), 2)}, r"toy.npz: val_labels is multi-label .* only 0 and 1"),
    ],
)
def test_medmnist_bad_arrays_name_the_file_and_key(tmp_path, changes, message):
    path = _rewrite(_npz(tmp_path), **changes)
    with pytest.raises(DataError, match=message) as raised:
        MedMNISTDataConfig(path=str(path)).load()
    assert "\n" not in str(raised.value)


def test_medmnist_label_out_of_range_for_class_names(tmp_path):
    path = _rewrite(_npz(tmp_path), test_labels=np.array([[0], [1], [2], [0], [1], [0]]))
    config = MedMNISTDataConfig(path=str(path), class_names=["a", "b"])
    with pytest.raises(DataError, match=r"toy.npz: label 2 is out of range .*data.class_names"):
        config.load()


def test_medmnist_missing_or_unreadable_file_says_what_to_get_and_where(tmp_path):
    missing = tmp_path / "nowhere" / "breastmnist.npz"
    with pytest.raises(DataError) as raised:
        MedMNISTDataConfig(name="breastmnist", path=str(missing)).load()
    message = str(raised.value)
    assert str(missing) in message and "breastmnist.npz" in message
    assert "zenodo.org/records/10519652" in message and "data.path=" in message
    not_npz = tmp_path / "junk.npz"
    not_npz.write_text("not a zip")
    with pytest.raises(DataError, match=r"junk.npz as a .npz archive"):
        MedMNISTDataConfig(path=str(not_npz)).load()


def test_medmnist_without_path_looks_in_the_shared_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DPTRAIN_DATA", str(tmp_path))
    (tmp_path / "images" / "toy").mkdir(parents=True)
    _npz(tmp_path / "images" / "toy")
    assert MedMNISTDataConfig(name="toy").load().n_records == 22


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split": "random"}, r"data.split must be one of .*'random'"),
        ({"max_records": -1}, r"data.max_records must be >= 0"),
        ({"augment": ["hflip", "blur"]}, r"unknown augmentation 'blur'"),
        ({"name": ""}, r"data.name is empty"),
    ],
)
def test_medmnist_config_is_validated_eagerly(changes, message):
    with pytest.raises(ConfigError, match=message):
        MedMNISTDataConfig(**{"path": "x.npz", **changes})


def test_fake_medmnist_signal_is_learnable(tmp_path):
    arrays = np.load(_npz(tmp_path, n_train=200, n_val=0, n_test=100, seed=1))
    model = LogisticRegression(max_iter=500).fit(
        arrays["train_images"].reshape(200, -1) / 255.0, arrays["train_labels"].ravel()
    )
    accuracy = model.score(arrays["test_images"].reshape(100, -1) / 255.0, arrays["test_labels"])
    assert accuracy > 0.9


# ---------------------------------------------------------------- image folder + CSV


@pytest.fixture(scope="module")
def folder_csv(tmp_path_factory) -> Path:
    """14 patients with 1-4 grey images each, some JPEG."""
    root = tmp_path_factory.mktemp("folder")
    return write_fake_image_folder(root, n_patients=14, max_images_per_patient=4, seed=2)


def _folder_config(csv: Path, **changes) -> ImageFolderDataConfig:
    config = ImageFolderDataConfig(
        path=str(csv),
        path_column="path",
        id_column="patient_id",
        label_columns=["label"],
        name="folder",
        patient_subgroup_columns=["sex", "age"],
        record_subgroup_columns=["view"],
        subgroup_bins={"age": [0.0, 50.0, 120.0]},
        size=16,
    )
    return dataclasses.replace(config, **changes)


def test_image_folder_loads_images_labels_and_both_kinds_of_subgroups(folder_csv):
    table = pd.read_csv(folder_csv)
    cohort = _folder_config(folder_csv).load()
    assert cohort.features.shape == (len(table), 1, 16, 16) and cohort.features.dtype == np.uint8
    assert cohort.n_patients == 14 and cohort.records_per_patient.max() > 1
    assert cohort.patient_ids.tolist() == table["patient_id"].tolist()
    assert cohort.labels.tolist() == table["label"].tolist()
    assert cohort.record_attributes["view"].tolist() == table["view"].tolist()
    first_rows = table.drop_duplicates("patient_id").set_index("patient_id")
    assert cohort.attributes["sex"].tolist() == first_rows.loc[cohort.patients, "sex"].tolist()
    expected_age = np.where(first_rows.loc[cohort.patients, "age"] < 50, "0-50", "50-120")
    assert cohort.attributes["age"].tolist() == expected_age.tolist()
    # Pixels are the file's, resized with Pillow.
    with Image.open(folder_csv.parent / table["path"][0]) as image:
        resized = np.asarray(image.convert("L").resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(cohort.features[0, 0], resized)
    assert cohort.notes == ()


def test_image_folder_rgb_and_multilabel(tmp_path):
    csv = write_fake_image_folder(
        tmp_path, n_patients=5, max_images_per_patient=2, channels="rgb", multilabel=True
    )
    cohort = _folder_config(
        csv, label_columns=["effusion", "nodule"], channels="rgb", size=20
    ).load()
    assert cohort.features.shape[1:] == (3, 20, 20)
    assert cohort.task == "multilabel" and cohort.class_names == ("effusion", "nodule")
    assert cohort.labels.tolist() == pd.read_csv(csv)[["effusion", "nodule"]].to_numpy().tolist()


def test_lazy_and_in_memory_give_identical_images(folder_csv):
    eager = _folder_config(folder_csv).load()
    lazy = _folder_config(folder_csv, lazy=True).load()
    assert isinstance(lazy.features, LazyImageFiles)
    assert lazy.features.shape == eager.features.shape
    np.testing.assert_array_equal(read(lazy.features), eager.features)
    some = np.array([5, 0, 3])
    subset = lazy.subset_by_patients(some)
    assert isinstance(subset.features, LazyImageFiles)  # subsets stay lazy
    np.testing.assert_array_equal(read(subset.features), eager.subset_by_patients(some).features)
    restored = pickle.loads(pickle.dumps(lazy.features))
    np.testing.assert_array_equal(restored.read(np.array([2, 1])), eager.features[[2, 1]])


@pytest.mark.parametrize("lazy", [False, True])
def test_normalisation_statistics_come_from_the_training_split_only(folder_csv, lazy):
    cohort = _folder_config(folder_csv, lazy=lazy, augment=["hflip"]).load()
    split = split_by_patient(cohort, test_fraction=0.3, seed=0)
    fitted = cohort.preprocessing.fit(split.train.features)
    train_pixels = read(split.train.features) / 255.0
    assert np.isclose(fitted.mean.item(), train_pixels.mean(), atol=1e-6)
    assert np.isclose(fitted.std.item(), train_pixels.std(), atol=1e-6)
    assert not np.isclose(fitted.mean.item(), read(cohort.features).mean() / 255.0, atol=1e-6)
    assert len(fitted.augmentations) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patient_split_and_audit_masks_keep_multi_image_patients_whole(folder_csv, seed):
    cohort = _folder_config(folder_csv).load()
    split = split_by_patient(cohort, test_fraction=0.3, seed=seed)
    assert not set(split.train.patients) & set(split.test.patients)
    assert split.train.n_records + split.test.n_records == cohort.n_records
    records_of = dict(zip(cohort.patients, cohort.records_per_patient.tolist()))
    for side in (split.train, split.test):
        assert side.records_per_patient.tolist() == [records_of[p] for p in side.patients]
    masks = balanced_membership_masks(patient_labels=cohort.patient_labels, num_models=6, seed=seed)
    record_masks = cohort.record_mask(masks)  # (6, n_records)
    for patient in range(cohort.n_patients):
        records = record_masks[:, cohort.record_patient == patient]
        assert (records == records[:, :1]).all()  # one membership per patient in every model


def _bad_csv(tmp_path, frame: pd.DataFrame | None, text: str | None = None) -> Path:
    path = tmp_path / "meta.csv"
    if text is not None:
        path.write_text(text)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("edit", "changes", "message"),
    [
        (None, {"path_column": "file"}, r"data.path_column: column 'file' not in meta.csv"),
        (None, {"label_columns": ["finding"]}, r"data.label_columns: column 'finding' not in"),
        (None, {"id_column": "subject"}, r"data.id_column: column 'subject' not in meta.csv"),
        (
            None,
            {"patient_subgroup_columns": ["sex", "age", "race"]},
            r"data.patient_subgroup_columns: column 'race' not in meta.csv",
        ),
        (
            lambda f: f.assign(patient_id=f["patient_id"].where(f.index != 1)),
            {},
            r"data.id_column: 1 rows of meta.csv have no value in column 'patient_id'",
        ),
        (
            lambda f: f.assign(label=f["label"].where(f.index != 2)),
            {},
            r"column 'label' of meta.csv has 1 missing labels",
        ),
        (
            lambda f: f.assign(label=np.where(f["label"] == 1, "yes", "no")),
            {},
            r"column 'label' of meta.csv has non-integer labels",
        ),
        (
            lambda f: f.assign(label=f["label"] * 0.5),
            {},
            r"column 'label' of meta.csv has non-integer labels",
        ),
        (
            lambda f: f.assign(sex=["F", "M"] * (len(f) // 2) + ["F"] * (len(f) % 2)),
            {},
            r"data.patient_subgroup_columns: column 'sex' of meta.csv varies within patient 'P",
        ),
        (
            lambda f: f.assign(path=f["path"].where(f.index != 3, "images/none.png")),
            {},
            r"data.path_column: 1 of the \d+ image files listed in meta.csv .*none.png \(missing\)",
        ),
    ],
)
def test_image_folder_bad_input_names_the_file_and_field(
    tmp_path, folder_csv, edit, changes, message
):
    frame = pd.read_csv(folder_csv)
    frame = edit(frame) if edit else frame
    csv = _bad_csv(tmp_path, frame)
    config = _folder_config(csv, image_root=str(folder_csv.parent), **changes)
    with pytest.raises(DataError, match=message) as raised:
        load_image_folder(config)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", r"meta.csv is empty"), ("path,patient_id,label\n", r"meta.csv has a header but no rows")],
)
def test_image_folder_empty_metadata(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        _folder_config(_bad_csv(tmp_path, None, text)).load()


def test_image_folder_missing_metadata_file(tmp_path):
    with pytest.raises(DataError, match=r"data.path: file not found: .*absent.csv"):
        _folder_config(tmp_path / "absent.csv").load()


@pytest.fixture
def broken_folder(tmp_path) -> Path:
    """A folder whose CSV lists one missing and two undecodable files among its images."""
    csv = write_fake_image_folder(tmp_path, n_patients=6, max_images_per_patient=3, seed=5)
    frame = pd.read_csv(csv)
    for row in (1, 2):
        (tmp_path / frame["path"][row]).write_bytes(b"\x89PNG but not really")
    (tmp_path / frame["path"][4]).unlink()
    return csv


def test_unreadable_and_missing_files_are_named_and_counted(broken_folder):
    with pytest.raises(DataError) as raised:
        _folder_config(broken_folder).load()
    message = str(raised.value)
    assert "3 of the" in message and "data.on_bad_file=skip" in message and "\n" not in message
    frame = pd.read_csv(broken_folder)
    assert frame["path"][1] in message and "unreadable" in message


def test_on_bad_file_skip_drops_them_and_notes_the_count(broken_folder):
    frame = pd.read_csv(broken_folder)
    cohort = _folder_config(broken_folder, on_bad_file="skip", min_subgroup_size=1).load()
    assert cohort.n_records == len(frame) - 3
    assert cohort.record_attributes["view"].tolist() == frame["view"].drop([1, 2, 4]).tolist()
    assert any(note.startswith("3 of the") for note in cohort.notes)


def test_continuous_subgroups_are_banded_and_small_ones_merged(broken_folder):
    frame = pd.read_csv(broken_folder)
    cohort = _folder_config(broken_folder, subgroup_bins={}, on_bad_file="skip").load()
    ages = set(np.asarray(cohort.attributes["age"]).tolist())
    raw = {str(value) for value in frame["age"]} | {f"{value:g}" for value in frame["age"]}
    if frame["age"].nunique() > 10:  # continuous: quartile bands, never a patient's own value
        assert not ages & raw and any("binned at the quartiles" in n for n in cohort.notes)
    views = cohort.record_attributes["view"]
    for value in set(views) - {"other (n < 5)"}:
        patients = set(cohort.record_patient[views == value])
        assert len(patients) >= 5  # smaller groups were merged
    with pytest.raises(ConfigError, match=r"data\.min_subgroup_size must be an integer >= 1"):
        _folder_config(broken_folder, min_subgroup_size=0)


def test_lazy_checks_existence_at_load_and_names_undecodable_files_at_read(broken_folder):
    with pytest.raises(DataError, match=r"1 of the .* \(missing\)"):
        _folder_config(broken_folder, lazy=True).load()
    cohort = _folder_config(broken_folder, lazy=True, on_bad_file="skip").load()
    assert cohort.n_records == len(pd.read_csv(broken_folder)) - 1  # only the missing file
    with pytest.raises(DataError, match=r"cannot decode image .*\.png"):
        read(cohort.features)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    pixels = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    decoded = decode_image(tmp_path / "deep.png", size=2, channels="grey")
    assert decoded[0].tolist() == [[0, 100], [200, 255]]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": "cmyk"}, r"data.channels must be one of .*'cmyk'"),
        ({"on_bad_file": "ignore"}, r"data.on_bad_file must be one of .*'ignore'"),
        ({"size": 0}, r"data.size must be >= 1"),
        ({"label_columns": []}, r"data.label_columns is empty"),
        ({"subgroup_bins": {"weight": [0.0, 1.0]}}, r"subgroup_bins.weight: 'weight' is not a"),
        ({"subgroup_bins": {"age": [50.0, 10.0]}}, r"subgroup_bins.age must be"),
        ({"record_subgroup_columns": ["sex"]}, r"'sex' is in both"),
    ],
)
def test_image_folder_config_is_validated_eagerly(changes, message):
    with pytest.raises(ConfigError, match=message):
        _folder_config(Path("meta.csv"), **changes)


# ---------------------------------------------------------------- locating shared data


def test_shared_data_path_prefers_the_environment_then_falls_back(tmp_path, monkeypatch):
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "a.npz").write_bytes(b"")
    monkeypatch.setenv("DPTRAIN_DATA", str(tmp_path))
    assert shared_data_path("sets/a.npz") == str(tmp_path / "sets" / "a.npz")
    monkeypatch.delenv("DPTRAIN_DATA")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sets").mkdir(parents=True)
    (tmp_path / "data" / "sets" / "b.npz").write_bytes(b"")
    assert Path(shared_data_path("sets/b.npz")).resolve() == (tmp_path / "data/sets/b.npz")
    assert shared_data_path("sets/none.npz") == str(DEFAULT_DATA_DIR / "sets" / "none.npz")


# ---------------------------------------------------------------- the real shared files

BREAST = Path(shared_data_path("images/breastmnist/breastmnist.npz"))
PNEUMONIA = Path(shared_data_path("images/pneumoniamnist/pneumoniamnist.npz"))


@pytest.mark.skipif(not BREAST.is_file(), reason="shared BreastMNIST file not present")
def test_real_breastmnist_loads():
    cohort = MedMNISTDataConfig(name="breastmnist", path=str(BREAST), split="official").load()
    assert cohort.features.shape == (780, 1, 28, 28) and cohort.features.dtype == np.uint8
    counts = pd.Series(cohort.official_split).value_counts().to_dict()
    assert counts == {"train": 546, "val": 78, "test": 156}
    assert np.bincount(cohort.labels).tolist() == [210, 570]


@pytest.mark.skipif(not PNEUMONIA.is_file(), reason="shared PneumoniaMNIST file not present")
def test_real_pneumoniamnist_loads():
    cohort = MedMNISTDataConfig(name="pneumoniamnist", path=str(PNEUMONIA)).load()
    assert cohort.features.shape == (5030, 1, 28, 28)
    counts = pd.Series(cohort.record_attributes["source_split"]).value_counts().to_dict()
    assert counts == {"train": 3882, "val": 524, "test": 624}
    assert cohort.task == "binary"
