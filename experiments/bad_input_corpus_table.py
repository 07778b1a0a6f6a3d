"""The bad-input corpus as a table: every case through the real CLI, its exit status and message.

Runs each case of ``tests/cli/test_bad_input_corpus.py`` (one malformed config or data file in a
real on-disk format) through `dptrain.cli.main.main` in this process and prints a Markdown row:
case, exit status, the first stderr line (temporary paths shown as …), then a one-line verdict.
Takes about a minute: every case fails before training.

    python experiments/bad_input_corpus_table.py
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package

from dptrain.cli import main as cli
from tests.cli import test_bad_input_corpus as corpus
from tests.cli.test_main import KEEP_LOGGING


def run_case(build) -> tuple[int, list[str], str]:
    """(exit status, stderr lines, temporary folder) of one corpus case."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        overrides = build(tmp)
        if not any(o.startswith("hydra.run.dir=") for o in overrides):
            overrides = [*overrides, f"hydra.run.dir={tmp / 'run'}"]
        sys.argv = ["dptrain", *overrides, *KEEP_LOGGING]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main()
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        return code, [line for line in err.getvalue().splitlines() if line.strip()], folder


def main() -> None:
    torch.set_num_threads(1)
    print("| case | exit | stderr (one line; temporary paths shown as …) |\n|---|---|---|")
    results = []
    for name, build, _ in corpus.CORPUS:
        code, lines, folder = run_case(build)
        message = (lines[0] if lines else "").replace(folder, "…").replace("|", "\\|")
        results.append((code, len(lines)))
        print(f"| {name} | {code} | {message} |", flush=True)
    print(
        f"\n{len(results)} cases; exit 2 in all: {all(c == 2 for c, _ in results)}; "
        f"one line in all: {all(n == 1 for _, n in results)}"
    )


if __name__ == "__main__":
    main()
