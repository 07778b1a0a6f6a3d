"""`dptrain -m` writes the sweep report (a Hydra callback); `dptrain-report` rebuilds it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from dptrain.cli import main as cli
from dptrain.cli import report
from dptrain.data.fake import write_fake_ehr_table
from dptrain.reporting.results import read_results
from dptrain.reporting.sweep_report import HTML_FILE, MARKDOWN_FILE

from ..conftest import FAST, table_overrides
from ..reporting.test_sweep_report import markdown_table
from .test_main import KEEP_LOGGING

SWEEP = ["privacy.epsilon=1,inf", "seed=0,1"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A real 4-run multirun (ε ∈ {1, ∞} × seed ∈ {0, 1}), in this process, tiny settings."""
    root = tmp_path_factory.mktemp("multirun")
    visits = write_fake_ehr_table(
        root / "visits.csv", n_patients=120, max_records_per_patient=3, seed=3
    )
    argv = [
        "dptrain",
        "--multirun",
        *table_overrides(visits),
        *FAST,
        *SWEEP,
        *KEEP_LOGGING,
        f"hydra.sweep.dir={root / 'sweep'}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPTRAIN_HOME", str(root / "home"))  # no pseudonym key in the user's home
        patch.setattr(sys, "argv", argv)
        cli.main()
    return root / "sweep"


def run_results(sweep_dir):
    return {
        int(path.parent.name): read_results(path)["summary"]
        for path in sweep_dir.glob("*/results.json")
    }


@pytest.mark.slow
def test_multirun_writes_the_sweep_report_matching_each_run(sweep_dir):
    results = run_results(sweep_dir)
    assert sorted(results) == [0, 1, 2, 3]
    text = (sweep_dir / MARKDOWN_FILE).read_text()
    assert (sweep_dir / HTML_FILE).stat().st_size > 20_000
    for name in ("privacy_utility", "leakage_vs_epsilon", "patient_risk_survival"):
        assert (sweep_dir / f"sweep_{name}.png").is_file()
    header, *rows = markdown_table(text, "privacy.epsilon")
    assert [row[0] for row in rows] == ["1", "∞"] and [row[1] for row in rows] == ["2", "2"]
    by_epsilon = {True: [], False: []}  # private (ε = 1) first, then the baseline
    for summary in results.values():
        by_epsilon[summary["privacy/private"]].append(summary)
    columns = (("test AUROC", "utility/auroc"), ("best attack AUC", "audit/best_attack_auc"))
    for row, runs in zip(rows, by_epsilon.values()):
        assert len(runs) == 2
        for column, key in columns:
            mean = sum(run[key] for run in runs) / len(runs)
            assert row[header.index(column)].startswith(f"{mean:.3f} ["), column
    _, *run_rows = markdown_table(text, "run")
    assert len(run_rows) == 4
    for row in run_rows:
        summary = results[int(row[0])]
        assert row[3] == f"{summary['utility/auroc']:.3f}"


@pytest.mark.slow
def test_dptrain_report_over_chosen_run_dirs_lists_an_unfinished_one(sweep_dir, tmp_path, capsys):
    killed = tmp_path / "killed"
    (killed / ".hydra").mkdir(parents=True)
    out = tmp_path / "out"
    code = report.main(
        [str(sweep_dir / "0"), str(sweep_dir / "2" / "results.json"), str(killed), "-o", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "2 runs in 2 groups (swept: privacy.epsilon); 1 left out" in captured.out
    assert str(killed) in captured.err and "no results.json" in captured.err
    text = (out / MARKDOWN_FILE).read_text()
    header, *rows = markdown_table(text, "privacy.epsilon")
    auroc = read_results(sweep_dir / "0" / "results.json")["summary"]["utility/auroc"]
    assert rows[0][header.index("test AUROC")] == f"{auroc:.3f} (1 seed)"
    assert "## Left out" in text and "killed" in text
    assert (out / HTML_FILE).is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["/no/such/folder"], "does not exist"),
        ([], "the following arguments are required: PATH"),
        (["{empty}"], "no finished runs"),
        (["{empty}", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments, message, tmp_path, capsys):
    arguments = [argument.format(empty=tmp_path) for argument in arguments]
    try:
        code = report.main(arguments)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("dptrain-report: error: ") and message in lines[0]
    )


def test_console_script_is_installed():
    script = shutil.which("dptrain-report")
    assert script is not None, "run `pip install -e .`"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "PATH" in done.stdout and "sweep_report.html" in done.stdout
