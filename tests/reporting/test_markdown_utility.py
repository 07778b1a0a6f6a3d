"""The report's utility section: intervals beside every value, reasons instead of NaN."""

from types import SimpleNamespace

import numpy as np

from dptrain.data.cohort import Cohort
from dptrain.reporting.markdown import utility_console_lines, utility_section
from dptrain.training.evaluate import evaluate


def _report(labels, sex):
    ids = [f"p{i}" for i in range(len(labels))]
    cohort = Cohort.from_records(
        name="t",
        features=np.zeros((len(labels), 1)),
        labels=labels,
        patient_ids=ids,
        attributes={"sex": dict(zip(ids, sex))},
        class_names=("alive", "dead"),
    )
    rng = np.random.default_rng(0)
    positive = np.clip(labels * 0.4 + rng.random(len(labels)) * 0.6, 0, 1)
    utility = evaluate(cohort, np.column_stack([1 - positive, positive]))
    data = {"cohort": cohort.summary()}
    return SimpleNamespace(utility=utility, data=data)


def test_every_value_has_an_interval_or_a_reason_and_no_nan():
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    sex = ["F"] * 20 + ["M"] * 10 + ["F"] * 10  # every "M" patient is alive: no AUROC for them
    report = _report(labels, sex)
    section = utility_section(report)
    assert "nan" not in section.lower()
    assert "95% interval (percentile bootstrap over test patients" in section
    all_row = next(line for line in section.splitlines() if line.startswith("| all |"))
    assert all_row.count("[") == 4  # AUROC, AUPRC, accuracy, balanced accuracy
    male_row = next(line for line in section.splitlines() if line.startswith("| M |"))
    assert male_row.count("not computable: only class 'alive' among these 10 record(s)") == 2
    assert "WARNING: the test split is small (40 patients)" in section


def test_console_line_shows_intervals_and_the_small_split_warning():
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    lines = utility_console_lines(_report(labels, ["F", "M"] * 20).utility)
    assert lines[0].startswith("utility      AUROC = ")
    assert lines[0].count("[") == 4 and "95% intervals over 40 test patients" in lines[0]
    assert lines[1].startswith("warning      the test split is small")
