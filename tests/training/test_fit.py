import math

import numpy as np
import pytest
import torch

from dptrain.data.cohort import Cohort
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.splits import split_by_patient
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.checkpoint import load_checkpoint, save_checkpoint
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit

FAST = TrainConfig(epochs=3, batch_size=32, lr=0.01)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    csv = write_fake_ehr_table(
        tmp_path_factory.mktemp("data") / "visits.csv",
        n_patients=200,
        max_records_per_patient=2,
        signal=3.0,
        seed=0,
    )
    return TableDataConfig(
        path=str(csv),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex", "age"],
    ).load()


def test_dp_training_spends_at_most_the_target_epsilon(cohort):
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[16]),
        privacy=PrivacyConfig(epsilon=2.0, unit="record"),
        train=FAST,
        seed=0,
    )
    spend = model.privacy
    assert spend.private and spend.unit == "record"
    assert spend.epsilon <= 2.0 and spend.epsilon > 1.9
    assert spend.epsilon_rdp >= spend.epsilon  # RDP is looser than PRV
    assert spend.steps == 3 * math.ceil(cohort.n_records / 32)
    assert spend.sample_rate == pytest.approx(1 / math.ceil(cohort.n_records / 32))
    assert spend.max_records_per_patient == 2
    assert [entry.epoch for entry in model.history] == [1, 2, 3]
    assert model.history[-1].epsilon_rdp == pytest.approx(spend.epsilon_rdp)
    assert model.accountant_state["history"] == [
        (spend.noise_multiplier, spend.sample_rate, spend.steps)
    ]


def test_non_private_baseline_has_infinite_epsilon_on_the_same_path(cohort):
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[16]),
        privacy=PrivacyConfig(mode="none"),
        train=FAST,
        seed=0,
    )
    assert not model.privacy.private
    assert math.isinf(model.privacy.epsilon) and model.privacy.noise_multiplier == 0.0
    assert model.accountant_state == {}
    assert model.predict_proba(cohort.features).shape == (cohort.n_records, 2)


def test_same_seed_same_model_and_global_rng_untouched(cohort):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    kwargs = dict(
        cohort=cohort, model_factory=MLPConfig(hidden=[8]), privacy=PrivacyConfig(), train=FAST
    )
    first = fit(seed=5, **kwargs).predict_logits(cohort.features)
    assert torch.rand(1) == before  # fit forks the RNG instead of consuming the caller's
    second = fit(seed=5, **kwargs).predict_logits(cohort.features)
    third = fit(seed=6, **kwargs).predict_logits(cohort.features)
    assert np.array_equal(first, second)
    assert not np.allclose(first, third)


def test_ghost_clipping_and_hooks_compute_the_same_private_step(cohort):
    """Ghost clipping computes per-sample norms without per-sample gradients: same update."""
    outputs = [
        fit(
            cohort=cohort,
            model_factory=MLPConfig(hidden=[8]),
            privacy=PrivacyConfig(grad_sample_mode=mode, unit="record"),
            train=FAST,
            seed=1,
        ).predict_logits(cohort.features)
        for mode in ("ghost", "hooks")
    ]
    assert np.allclose(outputs[0], outputs[1], atol=1e-4)


def test_per_sample_gradients_equal_batch_of_one_gradients(cohort):
    """Opacus' per-sample gradients (what gets clipped) against the naive batch-of-one reference."""
    from opacus import GradSampleModule

    from dptrain.training.loop import RecordLoss

    torch.manual_seed(0)
    module = MLPConfig(hidden=[8]).build((cohort.features.shape[1],), 2)
    wrapped = GradSampleModule(module)
    features = torch.nan_to_num(torch.from_numpy(cohort.features[:5]))
    labels = torch.from_numpy(cohort.labels[:5])
    RecordLoss(multilabel=False, class_weights=None)(wrapped(features), labels).backward()
    per_sample = [p.grad_sample for p in wrapped.parameters()]
    for i in range(5):
        module.zero_grad()
        RecordLoss(multilabel=False, class_weights=None)(
            module(features[i : i + 1]), labels[i : i + 1]
        ).backward()
        for parameter, grads in zip(module.parameters(), per_sample):
            assert torch.allclose(grads[i], parameter.grad, atol=1e-6)


def test_tiny_cohort_with_empty_poisson_batches_still_trains(cohort):
    tiny = cohort.subset_by_patients(np.arange(6))
    model = fit(
        cohort=tiny,
        model_factory=MLPConfig(hidden=[4]),
        privacy=PrivacyConfig(delta=1e-3, unit="record"),
        train=TrainConfig(epochs=5, batch_size=1),
        seed=0,
    )
    assert model.privacy.steps == 5 * tiny.n_records
    assert np.isfinite(model.predict_logits(tiny.features)).all()


def test_delta_not_below_one_over_n_is_rejected_before_training(cohort):
    with pytest.raises(ConfigError, match="is not below 1/N"):
        fit(
            cohort=cohort,
            model_factory=MLPConfig(),
            privacy=PrivacyConfig(delta=0.1),
            train=FAST,
            seed=0,
        )


def test_dp_model_learns_the_signal(cohort):
    split = split_by_patient(cohort, test_fraction=0.3, seed=0)
    model = fit(
        cohort=split.train,
        model_factory=MLPConfig(hidden=[16]),
        privacy=PrivacyConfig(epsilon=8.0),
        train=TrainConfig(epochs=10, batch_size=64),
        seed=0,
    )
    from sklearn.metrics import roc_auc_score

    auroc = roc_auc_score(split.test.labels, model.predict_proba(split.test.features)[:, 1])
    assert auroc > 0.7


def test_multiclass_and_multilabel_train(cohort):
    rng = np.random.default_rng(0)
    for labels in (rng.integers(0, 3, cohort.n_records), rng.integers(0, 2, (cohort.n_records, 3))):
        data = Cohort.from_records(
            name="m", features=cohort.features, labels=labels, patient_ids=cohort.patient_ids
        )
        model = fit(
            cohort=data,
            model_factory=MLPConfig(hidden=[4]),
            privacy=PrivacyConfig(),
            train=FAST,
            seed=0,
        )
        probabilities = model.predict_proba(data.features)
        assert probabilities.shape == (data.n_records, 3)
        if data.task == "multiclass":
            assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_checkpoint_loads_safely_with_accountant_state(cohort, tmp_path):
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(hidden=[4]),
        privacy=PrivacyConfig(),
        train=FAST,
        seed=0,
    )
    path = save_checkpoint(model, tmp_path / "model.pt", model_config={"hidden": [4]})
    checkpoint = load_checkpoint(path)  # torch.load(weights_only=True)
    assert checkpoint["accountant"]["history"] == model.accountant_state["history"]
    assert checkpoint["privacy"]["epsilon"] == model.privacy.epsilon
    rebuilt = MLPConfig(hidden=[4]).build((cohort.features.shape[1],), 2)
    rebuilt.load_state_dict(checkpoint["state_dict"])
    inputs = torch.from_numpy(np.nan_to_num(cohort.features[:3]))  # same weights, same outputs
    with torch.no_grad():
        assert torch.allclose(rebuilt(inputs), model.module(inputs))
    assert not (tmp_path / "model.pt.partial").exists()
