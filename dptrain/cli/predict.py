"""The ``dptrain-predict`` command: a run's ``model.pt`` applied to a new table.

``dptrain-predict MODEL.pt TABLE.csv [-o predictions.csv]`` writes one row per table row: the id
column, then ``p_<class name>`` per class. Warnings (unseen category levels, text read as
missing) go to stderr; an error a user can fix is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dptrain.errors import DptrainError

EXIT_USER_ERROR = 2
PROGRAM = "dptrain-predict"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit status 2, as argparse has)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    arguments = _OneLineParser(
        prog=PROGRAM,
        description="Apply a dptrain model (a run's model.pt) to a new table (CSV or Parquet).",
        epilog="Images and signals: use the Python API "
        "dptrain.predict.load_trained_model(path).predict_proba(records).",
    )
    arguments.add_argument("model", type=Path, help="the run's model.pt")
    arguments.add_argument("table", type=Path, help="the new table (.csv, .tsv, .parquet)")
    arguments.add_argument(
        "-o", "--output", type=Path, help="write the predictions here (CSV) instead of stdout"
    )
    arguments.add_argument("--encoding", default="utf-8", help="text encoding of a CSV table")
    arguments.add_argument(
        "--separator", default="", help="CSV separator: a character, comma, semicolon, tab, pipe"
    )
    return arguments


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    options = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROGRAM}: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("dptrain").addHandler(handler)
    try:
        from dptrain.predict import predict_table  # torch loads only for a real call

        predictions = predict_table(
            options.model, options.table, encoding=options.encoding, separator=options.separator
        )
    except DptrainError as error:
        print(f"{PROGRAM}: error: {str(error).removeprefix('data.path: ')}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    finally:
        logging.getLogger("dptrain").removeHandler(handler)
    if options.output is None:
        predictions.to_csv(sys.stdout, index=False, float_format="%.6g")
        return
    try:
        predictions.to_csv(options.output, index=False, float_format="%.6g")
    except OSError as error:
        print(
            f"{PROGRAM}: error: cannot write {options.output} ({error.strerror or error}); "
            "choose another -o path",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)
    print(f"{PROGRAM}: wrote {len(predictions)} rows to {options.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
