"""Hydra callbacks: the sweep report written at the end of every ``dptrain -m ...``.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``. The report is made from the run
directories' saved files, exactly as ``dptrain-report <sweep dir>`` would make it. The runs have
finished by then, so a report that cannot be made is a warning naming the command that retries
it, never a failed sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dptrain.errors import DptrainError
from dptrain.reporting.sweep_report import report_sweep

log = logging.getLogger("dptrain")


class SweepReportCallback(Callback):
    """Writes ``sweep_report.md``/``.html`` and figures into the multirun's sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Compares the sweep's finished runs; logs where the report is."""
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            _, files = report_sweep([sweep_dir], out_dir=sweep_dir)
        except DptrainError as error:
            log.warning("no sweep report: %s", error)
            return
        except Exception:  # the runs are saved; a report bug must not fail the sweep
            log.exception(
                "the sweep report failed; the runs are complete: retry with `dptrain-report %s`",
                sweep_dir,
            )
            return
        log.info("sweep report: %s (and %s)", files.markdown, files.html.name)
