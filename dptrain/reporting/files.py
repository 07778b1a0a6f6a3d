"""The run directory's file names and reading ``results.json``, without torch or Opacus.

What reads saved runs (the sweep report, ``dptrain-report``, users' notebooks) imports this module
only, so it starts in a fraction of a second and needs no training code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.3"
RESULTS_FILE = "results.json"
PATIENT_RISK_FILE = "patient_risk.csv"


def read_results(path: Path) -> dict[str, Any]:
    """Reads a ``results.json``, with ``"inf"`` strings back as floats.

    Raises:
        ValueError: If the file is not a complete dptrain results file.
    """
    results = json.loads(Path(path).read_text(), object_hook=_revive_infinities)
    if results.get("status") != "complete" or "schema_version" not in results:
        raise ValueError(f"{path} is not a complete dptrain results file")
    return results


def _revive_infinities(mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        key: float(value) if value in ("inf", "-inf") else value for key, value in mapping.items()
    }
