"""The ``dptrain-report`` command: compare finished runs (a sweep) from their saved files.

``dptrain-report multirun/2026-01-01/12-00-00`` searches the folder for run directories and writes
``sweep_report.md`` (with PNG figures) and a self-contained ``sweep_report.html`` into it;
``dptrain-report RUN_DIR RUN_DIR ... -o OUT`` compares runs picked by hand. Nothing retrains. Bad
input (a missing path, no finished run, an unwritable folder) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from dptrain.errors import DptrainError

EXIT_USER_ERROR = 2
PROG = "dptrain-report"


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit 2, as argparse's do)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{PROG}: error: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``PATH... [-o OUT]``."""
    parser = _OneLineParser(
        prog=PROG,
        description=(
            "Compare dptrain runs: a table with seeds aggregated (mean and 95%% interval), "
            "privacy-utility and leakage plots, patient-risk curves and subgroup disparity, as "
            "sweep_report.md and a self-contained sweep_report.html. Reads results.json and "
            "patient_risk.csv only; never retrains."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run directories, results.json files, or folders to search (a multirun root)",
    )
    parser.add_argument(
        "-o",
        "--out",
        default=None,
        help="folder for the report (default: the deepest folder containing every PATH)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status (0, or 2 for bad input)."""
    arguments = build_parser().parse_args(argv)
    from dptrain.reporting.sweep_report import report_sweep  # the parser answers --help at once

    # Skipped runs are warnings of the library's logger: one line each on stderr, here only.
    logger = logging.getLogger("dptrain")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        sweep, files = report_sweep(arguments.paths, out_dir=arguments.out)
    except DptrainError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    axes = ", ".join(axis.key for axis in sweep.axes) or "none"
    print(
        f"{len(sweep.runs)} runs in {len(sweep.groups)} groups (swept: {axes})"
        + (f"; {len(sweep.skipped)} left out" if sweep.skipped else "")
    )
    print(f"report       {files.markdown}")
    print(f"html         {files.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
