"""Checkpoint format 3: safe loading, clear errors for bad files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.errors import DataError
from dptrain.models import MLPConfig
from dptrain.predict import load_trained_model
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.checkpoint import (
    checkpoint_feature_encoding,
    load_checkpoint,
    save_checkpoint,
)
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit

MLP = {"hidden": [4], "activation": "tanh", "norm": "none", "dropout": 0.0}


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    path = write_fake_ehr_table(folder / "t.csv", n_patients=40, seed=2)
    cohort = TableDataConfig(
        path=str(path), id_column="patient_id", label_columns=["label"], exclude_columns=["sex"]
    ).load()
    model = fit(
        cohort=cohort,
        model_factory=MLPConfig(**MLP),
        privacy=PrivacyConfig(mode="none"),
        train=TrainConfig(epochs=1, batch_size=16),
        seed=0,
    )
    return cohort, model


def test_format_3_rebuilds_the_model_and_its_encoding(table_model, tmp_path):
    cohort, model = table_model
    path = save_checkpoint(
        model,
        tmp_path / "model.pt",
        model_config=MLP,
        input_shape=cohort.features.shape[1:],
        class_names=cohort.class_names,
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint["model_name"] == "mlp" and checkpoint["format"] == 3
    assert checkpoint_feature_encoding(checkpoint).feature_names == cohort.feature_names
    rebuilt = load_trained_model(path)
    np.testing.assert_allclose(
        rebuilt.predict_proba(cohort.features), model.predict_proba(cohort.features), atol=1e-7
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left


def test_truncated_or_unknown_checkpoints_are_one_line_errors(table_model, tmp_path):
    _, model = table_model
    path = save_checkpoint(model, tmp_path / "model.pt", model_config=MLP)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"truncated\.pt is not a readable dptrain checkpoint"):
        load_checkpoint(truncated)
    future = load_checkpoint(path) | {"format": 99}
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(DataError, match=r"checkpoint format 99; this dptrain reads formats"):
        load_checkpoint(tmp_path / "future.pt")


def test_a_failed_write_keeps_the_previous_checkpoint(table_model, tmp_path, monkeypatch):
    _, model = table_model
    path = save_checkpoint(model, tmp_path / "model.pt", model_config=MLP)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(model, path, model_config=MLP)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
