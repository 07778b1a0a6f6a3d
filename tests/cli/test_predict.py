"""`dptrain-predict` and `predict_table`: a run's model.pt applied to a new table, exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dptrain.pipeline
from dptrain.cli import main as cli
from dptrain.cli import predict as predict_cli
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig
from dptrain.errors import DataError
from dptrain.predict import load_trained_model, predict_table
from dptrain.training.checkpoint import load_checkpoint

from ..conftest import FAST, table_overrides
from .test_main import KEEP_LOGGING


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny CLI run on a fake table; the run's in-memory model is kept beside its files."""
    folder = tmp_path_factory.mktemp("predict")
    csv = write_fake_ehr_table(
        folder / "visits.csv", n_patients=80, max_records_per_patient=3, seed=5
    )
    captured = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        write_run = dptrain.pipeline.write_run

        def keep_model(report, *, model, output_dir, tracker):
            captured["model"] = model
            return write_run(report, model=model, output_dir=output_dir, tracker=tracker)

        monkeypatch.setattr(dptrain.pipeline, "write_run", keep_model)
        monkeypatch.setenv("DPTRAIN_HOME", str(folder / "home"))
        run_dir = folder / "run"
        overrides = [
            *table_overrides(csv),
            *FAST,
            "audit=none",
            "data.categorical_columns=[site]",
            "privacy.epsilon=8",
        ]
        argv = ["dptrain", *overrides, *KEEP_LOGGING, f"hydra.run.dir={run_dir}"]
        monkeypatch.setattr(sys, "argv", argv)
        cli.main()  # exits only on an error
    config = TableDataConfig(
        path=str(csv),
        id_column="patient_id",
        label_columns=["label"],
        exclude_columns=["sex", "age"],
        categorical_columns=["site"],
    )
    return {"csv": csv, "model_path": folder / "run" / "model.pt", "config": config, **captured}


def test_predictions_on_a_reordered_table_equal_the_in_run_model(trained_run, tmp_path):
    cohort = trained_run["config"].load()
    table = pd.read_csv(trained_run["csv"])
    rows = np.arange(0, len(table), 3)
    new = table.iloc[rows].drop(columns=["label"])
    new["extra"] = "ignored"
    new = new[list(reversed(new.columns))]  # columns in another order
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)

    predictions = predict_table(trained_run["model_path"], path)

    expected = trained_run["model"].predict_proba(cohort.features[rows])
    assert list(predictions.columns) == ["patient_id", "p_0", "p_1"]
    assert predictions["patient_id"].tolist() == table["patient_id"].iloc[rows].tolist()
    np.testing.assert_allclose(predictions[["p_0", "p_1"]].to_numpy(), expected, atol=1e-6)
    assert np.abs(expected[:, 1] - expected[:, 1].mean()).max() > 1e-3  # not a constant model


def test_checkpoint_carries_the_encoding_and_loads_safely(trained_run):
    checkpoint = load_checkpoint(trained_run["model_path"])  # torch.load(weights_only=True)
    encoding = checkpoint["feature_encoding"]
    assert checkpoint["format"] == 3 and checkpoint["model_name"] == "mlp"
    assert encoding["categorical_levels"] == {"site": ["east", "north", "south"]}
    assert encoding["feature_names"][-3:] == ["site=east", "site=north", "site=south"]
    assert encoding["id_column"] == "patient_id" and encoding["class_names"] == ["0", "1"]
    assert "label" not in encoding["columns"] and "sex" not in encoding["columns"]
    model = load_trained_model(trained_run["model_path"])
    assert model.privacy.epsilon == pytest.approx(trained_run["model"].privacy.epsilon)


def test_unknown_levels_are_zero_one_hot_with_a_warning(trained_run, tmp_path, caplog):
    cohort = trained_run["config"].load()
    table = pd.read_csv(trained_run["csv"]).iloc[:4].copy()
    table.loc[table.index[:2], "site"] = "west"  # never seen in training
    path = tmp_path / "new.csv"
    table.to_csv(path, index=False)

    with caplog.at_level("WARNING", logger="dptrain"):
        predictions = predict_table(trained_run["model_path"], path)

    assert "column 'site': 2 row(s) with a level not seen in training" in caplog.text
    features = cohort.features[:4].copy()
    features[:2, -3:] = 0.0  # the site one-hot block of the two unknown rows
    expected = trained_run["model"].predict_proba(features)
    np.testing.assert_allclose(predictions[["p_0", "p_1"]].to_numpy(), expected, atol=1e-6)


def test_cli_writes_predictions_and_refuses_bad_input_in_one_line(trained_run, tmp_path, capsys):
    table = pd.read_csv(trained_run["csv"]).iloc[:5]
    good = tmp_path / "good.csv"
    table.to_csv(good, index=False)
    out = tmp_path / "out.csv"
    predict_cli.main([str(trained_run["model_path"]), str(good), "-o", str(out)])
    assert len(pd.read_csv(out)) == 5
    assert "wrote 5 rows" in capsys.readouterr().err

    lacking = tmp_path / "lacking.csv"
    table.drop(columns=["x1", "site"]).to_csv(lacking, index=False)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = {
        "lacks 2 feature column(s) the model was trained on: 'x1', 'site'": [
            trained_run["model_path"],
            lacking,
        ],
        "table not found": [trained_run["model_path"], tmp_path / "missing.csv"],
        "checkpoint not found": [tmp_path / "missing.pt", good],
        "garbage.pt is not a readable dptrain checkpoint": [garbage, good],
        "the following arguments are required: table": [trained_run["model_path"]],
    }
    for message, arguments in cases.items():
        with pytest.raises(SystemExit) as exit_:
            predict_cli.main([str(a) for a in arguments])
        err = capsys.readouterr().err
        assert exit_.value.code == 2, message
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_text_in_a_numeric_column_is_refused(trained_run, tmp_path):
    table = pd.read_csv(trained_run["csv"]).iloc[:3].astype({"x0": object})
    table.loc[table.index[0], "x0"] = "unk"
    path = tmp_path / "text.csv"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'x0' of text\.csv is numeric in the model"):
        predict_table(trained_run["model_path"], path)


def test_a_format_2_checkpoint_still_loads_but_cannot_predict(trained_run, tmp_path):
    checkpoint = load_checkpoint(trained_run["model_path"])
    for key in ("model_name", "input_shape", "class_names", "feature_encoding"):
        del checkpoint[key]
    checkpoint["format"] = 2
    old = tmp_path / "old.pt"
    torch.save(checkpoint, old)
    assert load_checkpoint(old)["format"] == 2
    with pytest.raises(DataError, match=r"format 2\) has no feature encoding; retrain"):
        predict_table(old, trained_run["csv"])


def test_image_models_point_to_the_python_api(trained_run, tmp_path):
    checkpoint = load_checkpoint(trained_run["model_path"])
    checkpoint["feature_encoding"] = None  # as an image or signal model's checkpoint has it
    image_like = tmp_path / "image.pt"
    torch.save(checkpoint, image_like)
    with pytest.raises(DataError, match=r"predict supports tables; for images"):
        predict_table(image_like, trained_run["csv"])


@pytest.mark.slow
def test_console_script_is_installed(trained_run, tmp_path):
    table = pd.read_csv(trained_run["csv"]).iloc[:3]
    path = tmp_path / "three.csv"
    table.to_csv(path, index=False)
    script = Path(sys.executable).with_name("dptrain-predict")
    done = subprocess.run(
        [str(script), str(trained_run["model_path"]), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[0] == "patient_id,p_0,p_1" and len(done.stdout.splitlines()) == 4
    )
