"""The core with non-table records: uint8 images, lazy records, augmentation, EMA, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from torch import nn

from dptrain.data.cohort import Cohort
from dptrain.data.preprocessing import ImageNormalize, ImageNormalizer
from dptrain.data.records import read
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.checkpoint import (
    checkpoint_preprocessing,
    load_checkpoint,
    save_checkpoint,
)
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit
from dptrain.training.loop import RecordLoss, batch_loss, record_dataset

FAST = TrainConfig(epochs=2, batch_size=16, lr=0.01)


class FileLikeRecords:
    """A minimal `LazyRecords`: counts how many records it was asked to read."""

    def __init__(self, array: np.ndarray, reads: list[int] | None = None) -> None:
        self.array = array
        self.reads = reads if reads is not None else []

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    def __len__(self) -> int:
        return len(self.array)

    def subset(self, indices):
        return FileLikeRecords(self.array[indices], self.reads)

    def read(self, indices):
        self.reads.append(len(indices))
        return self.array[indices]


def image_cohort(n_patients=40, per_patient=2, seed=0, lazy=False, augment=()) -> Cohort:
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 100, size=(n, 1, 8, 8)).astype(np.uint8)
    images[labels == 1, :, 2:6, 2:6] = 220  # a bright square marks class 1
    features = FileLikeRecords(images) if lazy else images
    return Cohort.from_records(
        name="squares",
        features=features,
        labels=labels,
        patient_ids=np.repeat(np.arange(n_patients), per_patient),
        record_attributes={"view": np.resize(["AP", "PA"], n)},
        preprocessing=ImageNormalize(augment=tuple(augment)),
    )


def test_images_stay_uint8_in_the_cohort_and_in_the_training_dataset():
    cohort = image_cohort()
    assert cohort.features.dtype == np.uint8
    fitted = cohort.preprocessing.fit(cohort.features)
    dataset = record_dataset(cohort.features, torch.from_numpy(cohort.labels), fitted)
    assert dataset.features.dtype == torch.uint8  # raw bytes held; float only per batch
    batch, _ = dataset.__getitems__([0, 1, 2])
    assert batch.dtype == torch.float32 and batch.shape == (3, 1, 8, 8)
    expected = (cohort.features[:3] / 255.0 - fitted.mean) / fitted.std
    assert np.allclose(batch.numpy(), expected, atol=1e-6)


def test_image_statistics_come_from_the_training_records_only():
    cohort = image_cohort()
    half = cohort.subset_by_patients(np.arange(20))
    fitted = ImageNormalize().fit(half.features)
    pixels = half.features.astype(np.float64) / 255.0
    assert fitted.mean.shape == (1, 1, 1)
    assert float(fitted.mean.squeeze()) == pytest.approx(pixels.mean(), rel=1e-6)
    assert float(fitted.std.squeeze()) == pytest.approx(pixels.std(), rel=1e-5)


def test_lazy_records_train_like_in_memory_records_and_are_read_per_batch():
    eager = fit(
        cohort=image_cohort(),
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(epsilon=4.0),
        train=FAST,
        seed=1,
    )
    lazy_cohort = image_cohort(lazy=True)
    lazy_train = lazy_cohort.subset_by_patients(np.arange(40))
    assert isinstance(lazy_train.features, FileLikeRecords)  # a subset stays lazy
    lazy = fit(
        cohort=lazy_train,
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(epsilon=4.0),
        train=FAST,
        seed=1,
    )
    statistics_read, *training_reads = lazy_cohort.features.reads
    assert statistics_read == 80  # normalisation statistics: one chunk of up to 4,096 records
    assert max(training_reads) < 40  # training reads a batch at a time
    for a, b in zip(eager.module.parameters(), lazy.module.parameters()):
        assert torch.equal(a, b)
    probabilities = lazy.predict_proba(lazy_train.features)
    assert np.allclose(probabilities, eager.predict_proba(read(lazy_train.features)))


def test_a_dp_image_model_learns_the_planted_square():
    cohort = image_cohort(n_patients=200, per_patient=1)
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[16]),
        privacy=PrivacyConfig(epsilon=8.0, unit="record"),
        train=TrainConfig(epochs=5, batch_size=32, lr=0.02),
        seed=0,
    )
    accuracy = (model.predict_proba(cohort.features).argmax(1) == cohort.labels).mean()
    assert accuracy > 0.9


class ShiftViews:
    """A deterministic 'augmentation': view v of the batch is the batch plus v/10."""

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return batch + self.calls / 10


def test_augmentation_multiplicity_gives_each_record_the_mean_gradient_of_its_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 2))
    criterion = RecordLoss(multilabel=False, class_weights=None)
    features, labels = torch.randn(4, 3, 4), torch.tensor([0, 1, 1, 0])
    views = 3
    reference = []
    for i in range(len(labels)):
        model.zero_grad()
        augment = ShiftViews()
        loss = (
            sum(
                criterion(model(augment(features[i : i + 1])), labels[i : i + 1])
                for _ in range(views)
            )
            / views
        )
        loss.backward()
        reference.append([p.grad.clone() for p in model.parameters()])
    private = GradSampleModule(model)
    batch_loss(private, criterion, features, labels, ShiftViews(), views).backward()
    for index, parameter in enumerate(model.parameters()):
        expected = torch.stack([per_record[index] for per_record in reference])
        assert torch.allclose(parameter.grad_sample, expected, atol=1e-6)


def test_multiplicity_trains_with_hooks_and_is_refused_with_ghost_or_without_augmentation():
    cohort = image_cohort(augment=("hflip", "crop:1"))
    train = TrainConfig(epochs=1, batch_size=16, augment_multiplicity=2)
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(epsilon=4.0),
        train=train,
        seed=0,
    )
    assert model.grad_sample_mode == "hooks"  # auto picks a mode that accumulates views
    with pytest.raises(ConfigError, match=r"augment_multiplicity > 1 needs privacy\.grad_sample"):
        fit(
            cohort=cohort,
            model_factory=MLPConfig(hidden=[8]),
            privacy=PrivacyConfig(epsilon=4.0, grad_sample_mode="ghost", unit="record"),
            train=train,
            seed=0,
        )
    with pytest.raises(ConfigError, match=r"set data\.augment"):
        fit(
            cohort=image_cohort(),
            model_factory=MLPConfig(hidden=[8]),
            privacy=PrivacyConfig(epsilon=4.0),
            train=train,
            seed=0,
        )


def test_ema_leaves_the_moving_average_in_the_deployed_model():
    cohort = image_cohort()
    kwargs = dict(
        cohort=cohort, model_factory=MLPConfig(hidden=[8]), privacy=PrivacyConfig(mode="none")
    )
    plain = fit(**kwargs, train=FAST, seed=3)
    averaged = fit(
        **kwargs, train=TrainConfig(epochs=2, batch_size=16, lr=0.01, ema_decay=0.9), seed=3
    )
    differs = [
        not torch.equal(a, b)
        for a, b in zip(plain.module.parameters(), averaged.module.parameters())
    ]
    assert all(differs)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_checkpoint_carries_the_image_preprocessing(tmp_path):
    cohort = image_cohort()
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(epsilon=4.0),
        train=FAST,
        seed=0,
    )
    path = save_checkpoint(model, tmp_path / "model.pt", model_config={"hidden": [8]})
    checkpoint = load_checkpoint(path)
    restored = checkpoint_preprocessing(checkpoint)
    assert isinstance(restored, ImageNormalizer)
    assert checkpoint["grad_sample_mode"] == model.grad_sample_mode
    module = MLPConfig(hidden=[8]).build((1, 8, 8), 2)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    with torch.no_grad():
        logits = module(restored.transform(torch.from_numpy(cohort.features)))
    assert np.allclose(logits.double().numpy(), model.predict_logits(cohort.features), atol=1e-6)


def test_record_attributes_follow_records_through_subsets_and_into_utility():
    from dptrain.training.evaluate import evaluate

    cohort = image_cohort()
    subset = cohort.subset_by_patients(np.array([3, 1]))
    assert subset.record_attributes["view"].tolist() == ["AP", "PA", "AP", "PA"]
    probabilities = np.tile([0.4, 0.6], (cohort.n_records, 1))
    report = evaluate(cohort, probabilities)
    assert set(report.subgroups["view"]) == {"AP", "PA"}
    assert report.subgroups["view"]["AP"].n_records == 40
    assert report.subgroups["view"]["AP"].n_patients == 40
