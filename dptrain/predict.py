"""Applying a trained model to new data, from its ``model.pt`` alone (no training file, no Hydra).

`load_trained_model` rebuilds the deployed `TrainedModel` from a checkpoint (format 3): the module
from the stored model config and shapes, the fitted preprocessing, the privacy guarantee. For a
table, `predict_table` then reads a new CSV or Parquet file, encodes its columns exactly as the
training table's were (`dptrain.data.table_encoding.FeatureEncoding`, stored in the checkpoint)
and returns one row of class probabilities per input row. Images and signals go through the
Python API: ``load_trained_model(path).predict_proba(records)`` on records shaped like the
training records (``(n, C, H, W)`` uint8 images, ``(n, leads, samples)`` float32 signals).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dptrain.data.table_encoding import EncodingReport, FeatureEncoding
from dptrain.data.table_files import read_table
from dptrain.errors import DataError
from dptrain.models.registry import model_config
from dptrain.privacy.accounting import PrivacySpend
from dptrain.training.checkpoint import (
    checkpoint_feature_encoding,
    checkpoint_preprocessing,
    load_checkpoint,
)
from dptrain.training.fit import TrainedModel

log = logging.getLogger(__name__)
TABLES_ONLY = (
    "predict supports tables; for images and signals use the Python API "
    "dptrain.predict.load_trained_model(path).predict_proba(records) (TrainedModel.predict_proba)"
)
PROBABILITY_PREFIX = "p_"


def load_trained_model(path: str | Path) -> TrainedModel:
    """The deployed model of a run, rebuilt from its ``model.pt``.

    Args:
        path: A checkpoint of format 3 (written by this dptrain version or later compatible).

    Returns:
        The model in eval mode on the CPU, with its preprocessing and privacy guarantee.

    Raises:
        DataError: For a file that is not a checkpoint, a format-2 checkpoint (it lacks the model
            name and shapes), a model with a fixed front end, or a model not in the registry.
    """
    path = Path(path).expanduser()
    return _model_from_checkpoint(load_checkpoint(path), path.name)


def _model_from_checkpoint(checkpoint: dict[str, Any], name: str) -> TrainedModel:
    if checkpoint["format"] < 3 or not checkpoint.get("model_name"):
        raise DataError(
            f"{name} (checkpoint format {checkpoint['format']}) does not say which model it "
            "holds or its input shape; retrain with this dptrain version to apply it to new data"
        )
    if checkpoint.get("frontend"):
        raise DataError(
            f"{name} holds a model behind the fixed front end {checkpoint['frontend']}; "
            "rebuild it with dptrain.training.frontend and apply it before predict_proba"
        )
    options = dict(checkpoint["model_config"])
    if "pretrained_path" in options:
        options["pretrained_path"] = None  # the trained weights come from the checkpoint
    factory = model_config(checkpoint["model_name"], **options)
    module = factory.build(tuple(checkpoint["input_shape"]), len(checkpoint["class_names"]))
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise DataError(
            f"{name}: the stored weights do not fit the stored model config "
            f"({str(error).splitlines()[0][:120]})"
        ) from error
    module.eval()
    privacy = {k: float(v) if v in ("inf", "-inf") else v for k, v in checkpoint["privacy"].items()}
    try:
        spend = PrivacySpend(**privacy)
    except TypeError as error:
        raise DataError(
            f"{name}: its privacy record is from another dptrain version ({error})"
        ) from error
    return TrainedModel(
        module=module,
        preprocessing=checkpoint_preprocessing(checkpoint),
        privacy=spend,
        history=(),
        task=checkpoint["task"],
        grad_sample_mode=checkpoint["grad_sample_mode"],
        device="cpu",
        accountant_state=checkpoint["accountant"],
    )


def table_encoding(path: str | Path) -> FeatureEncoding:
    """The feature encoding a table model's ``model.pt`` carries.

    Raises:
        DataError: For a model not trained on a table, or a format-2 checkpoint.
    """
    path = Path(path).expanduser()
    return _table_encoding(load_checkpoint(path), path.name)


def _table_encoding(checkpoint: dict[str, Any], name: str) -> FeatureEncoding:
    encoding = checkpoint_feature_encoding(checkpoint)
    if encoding is None:
        if checkpoint["format"] < 3:
            raise DataError(
                f"{name} (checkpoint format {checkpoint['format']}) has no feature encoding; "
                "retrain with this dptrain version to apply it to new tables"
            )
        raise DataError(f"{name} was not trained on a table: {TABLES_ONLY}")
    return encoding


def predict_table(
    model_path: str | Path,
    table_path: str | Path,
    *,
    encoding: str = "utf-8",
    separator: str = "",
) -> pd.DataFrame:
    """Class probabilities of every row of a new table, from a run's ``model.pt`` alone.

    The table's columns are found by name in any order; extra columns (labels among them) are
    ignored. A category level the model never saw is encoded as a blank (all-zero one-hot) and
    counted in a logged warning; blank numbers are imputed with the training split's medians.

    Args:
        model_path: The run's ``model.pt``.
        table_path: A CSV (``.csv``, ``.tsv``, ``.csv.gz``) or Parquet file.
        encoding: Text encoding of a CSV file.
        separator: CSV separator: a character or ``comma``, ``semicolon``, ``tab``, ``pipe``.

    Returns:
        One row per table row: the id column (the training table's patient id column when the
        table has it, else ``row``, counting from 1), then ``p_<class name>`` per class.

    Raises:
        DataError: For a model not trained on a table, a missing file, missing feature columns,
            text in a numeric column, or infinite values.

    Example:
        >>> from dptrain.predict import predict_table
        >>> predict_table("outputs/run/model.pt", "new_visits.csv")  # doctest: +SKIP
          patient_id       p_0       p_1
        0     P00001  0.811301  0.188699
    """
    model_path, table_path = Path(model_path).expanduser(), Path(table_path).expanduser()
    checkpoint = load_checkpoint(model_path)
    feature_encoding = _table_encoding(checkpoint, model_path.name)
    model = _model_from_checkpoint(checkpoint, model_path.name)
    if not table_path.is_file():
        raise DataError(f"table not found: {table_path} (give a CSV or Parquet file)")
    table = read_table(table_path, encoding=encoding, separator=separator)
    features, report = feature_encoding.encode(table, source=table_path.name)
    _log_report(report, table_path.name)
    if len(table) == 0:
        probabilities = np.zeros((0, len(feature_encoding.class_names)))
    else:
        probabilities = model.predict_proba(features)
    return prediction_frame(table, probabilities, feature_encoding)


def prediction_frame(
    table: pd.DataFrame, probabilities: np.ndarray, encoding: FeatureEncoding
) -> pd.DataFrame:
    """The id of each row beside its class probabilities (``p_<class name>``)."""
    id_column = encoding.id_column
    if id_column is not None and id_column in table.columns:
        ids = table[id_column].to_numpy()
    else:
        id_column, ids = "row", np.arange(1, len(table) + 1)
    columns = {id_column: ids}
    for index, name in enumerate(encoding.class_names):
        columns[f"{PROBABILITY_PREFIX}{name}"] = probabilities[:, index]
    return pd.DataFrame(columns)


def _log_report(report: EncodingReport, source: str) -> None:
    for line in report.warnings():
        log.warning("%s: %s", source, line)
