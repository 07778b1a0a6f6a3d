"""Hydra callbacks: a busy run directory refused early, and the sweep report of every multirun.

A run directory that a live run holds is refused before Hydra writes its ``.hydra/`` files into
it. Registered in ``conf/config.yaml`` under ``hydra.callbacks``. The report is made from the run
directories' saved files, exactly as ``dptrain-report <sweep dir>`` would make it. The runs have
finished by then, so a report that cannot be made is a warning naming the command that retries
it, never a failed sweep.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from dptrain.cli.rundir import check_run_directory_free
from dptrain.errors import DptrainError
from dptrain.reporting.sweep_report import report_sweep

log = logging.getLogger("dptrain")
# Set at the end of a multirun and read by `dptrain.cli.main.main` for the exit status: the jobs
# of the sweep that left no complete results.json. A job that fails inside a launcher's own
# process (joblib, submitit) cannot report back any other way.
SWEEP_OUTCOME: dict[str, int] = {"incomplete_runs": 0}


class RunDirectoryGuard(Callback):
    """Keeps Hydra from writing ``.hydra/`` into a run directory that a live run holds.

    Hydra turns a callback's exception into a warning, so the guard cannot stop the run itself: it
    switches Hydra's config copies off for this run and sends its job log file (``main.log``,
    which Hydra opens for appending) to the null device, and the app's own claim of the directory
    (`dptrain.cli.rundir.claim_run_directory`) then refuses it in one line with exit status 2.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Keeps Hydra's files out of the directory when another run holds it."""
        try:
            check_run_directory_free(Path(config.hydra.run.dir))
        except DptrainError:
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = None
                handlers = (config.hydra.get("job_logging") or {}).get("handlers") or {}
                for handler in handlers.values():
                    if "filename" in handler:
                        handler.filename = os.devnull


class SweepReportCallback(Callback):
    """Writes ``sweep_report.md``/``.html`` and figures into the multirun's sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Compares the sweep's finished runs; logs where the report is."""
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            sweep, files = report_sweep([sweep_dir], out_dir=sweep_dir)
        except DptrainError as error:
            SWEEP_OUTCOME["incomplete_runs"] = max(1, len(_job_dirs(sweep_dir)))
            log.warning("no sweep report: %s", error)
            return
        except Exception:  # the runs are saved; a report bug must not fail the sweep
            log.exception(
                "the sweep report failed; the runs are complete: retry with `dptrain-report %s`",
                sweep_dir,
            )
            return
        SWEEP_OUTCOME["incomplete_runs"] = len(sweep.skipped)
        log.info("sweep report: %s (and %s)", files.markdown, files.html.name)


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders (each holds Hydra's ``.hydra/`` config copies)."""
    return [path.parent for path in sweep_dir.glob("*/.hydra")]
