"""The run's result type and its ``results.json`` form (versioned schema).

``results.json`` is the contract with everything downstream (sweep comparisons, users'
notebooks): plain JSON without NaN or Infinity literals. Undefined numbers (a subgroup with one
class) are ``null``; an infinite ε (the non-private baseline) is the string ``"inf"``, which
`read_results` turns back into ``float("inf")``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dptrain import __version__
from dptrain.audit.dp_audits import DPAuditRow
from dptrain.audit.result import AuditResult
from dptrain.privacy.accounting import PrivacySpend
from dptrain.reporting.files import RESULTS_FILE, SCHEMA_VERSION, read_results  # noqa: F401 (re-export)
from dptrain.reporting.summary import run_summary
from dptrain.training.evaluate import UtilityReport
from dptrain.training.fit import EpochLog


@dataclass(frozen=True)
class RunReport:
    """Everything one run established, as plain data.

    Attributes:
        config: The run's resolved configuration (plain values).
        data: Summaries (counts only) of the cohort, the training and the test split.
        privacy: The deployed model's privacy guarantee.
        utility: Utility on the held-out patients, overall and per subgroup.
        history: Per-epoch training log of the deployed model.
        audit: The membership-inference audit (None with ``audit=none``).
        timings: Wall seconds of each stage.
        versions: Versions of Python and the libraries that matter for reproducing the run.
        training: How the deployed model was trained: Opacus grad sample mode, device, fixed
            front end, parameter count, intra-op threads.
        dp_audits: The audits of the DP implementation (canary, white box), each an ε lower
            bound beside the accountant's ε; empty when none was asked for.
    """

    config: dict[str, Any]
    data: dict[str, Any]
    privacy: PrivacySpend
    utility: UtilityReport
    history: tuple[EpochLog, ...]
    audit: AuditResult | None
    timings: dict[str, float]
    versions: dict[str, str]
    training: dict[str, Any] = field(default_factory=dict)
    dp_audits: tuple[DPAuditRow, ...] = ()


def to_plain(value: Any) -> Any:
    """Turns dataclasses, NumPy values and non-finite floats into strict-JSON values.

    Dataclass fields marked ``metadata={"json": False}`` (large per-record arrays that go to their
    own files) are left out.

    Example:
        >>> to_plain({"a": np.float64("nan"), "b": [np.int64(2), float("inf")]})
        {'a': None, 'b': [2, 'inf']}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def results_dict(report: RunReport) -> dict[str, Any]:
    """The ``results.json`` content of a report."""
    return {
        "schema_version": SCHEMA_VERSION,
        "dptrain_version": __version__,
        "status": "complete",
        "summary": to_plain(run_summary(report)),
        **to_plain(report),
    }


def write_results(report: RunReport, run_dir: Path) -> Path:
    """Writes ``results.json`` atomically, so a crash never leaves a partial file behind."""
    path = Path(run_dir) / RESULTS_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(results_dict(report), indent=2, allow_nan=False))
    os.replace(partial, path)
    return path
