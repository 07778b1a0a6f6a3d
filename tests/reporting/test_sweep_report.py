"""The sweep report's files: Markdown table, figures, and a self-contained, valid HTML page."""

from __future__ import annotations

import base64
import io
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from dptrain.errors import ConfigError
from dptrain.reporting.sweep import load_sweep
from dptrain.reporting.sweep_report import HTML_FILE, MARKDOWN_FILE, write_sweep_report

from .test_sweep import write_fake_run

VOID_ELEMENTS = {"meta", "img", "br", "hr", "link", "input"}


class _BalanceChecker(HTMLParser):
    """Records unbalanced tags and every <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def epsilon_sweep(tmp_path_factory) -> Path:
    """ε ∈ {1, 8, ∞} × 2 seeds, plus one run killed before results.json."""
    root = tmp_path_factory.mktemp("epsilon_sweep")
    index = 0
    for epsilon in (math.inf, 1.0, 8.0):
        for seed, auroc in ((0, 0.70), (1, 0.80)):
            write_fake_run(root / f"{index}", epsilon=epsilon, seed=seed, auroc=auroc)
            index += 1
    (root / f"{index}" / ".hydra").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def epsilon_report(epsilon_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_sweep_report(load_sweep([epsilon_sweep]), out_dir=out)


def markdown_table(text: str, first_header: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_markdown_table_has_a_row_per_group_with_mean_and_interval(epsilon_report):
    text = epsilon_report.markdown.read_text()
    header, *rows = markdown_table(text, "privacy.epsilon")
    assert header[:4] == ["privacy.epsilon", "seeds", "ε", "test AUROC"]
    for title in ("best attack AUC", "TPR @ 0.1 % FPR", "ε lower bound", "DP max patient AUC"):
        assert title in header
    assert [row[0] for row in rows] == ["1", "8", "∞"]
    auroc = header.index("test AUROC")
    # seeds 0.70 and 0.80: mean 0.75 ± t(0.975, 1) · sd / √2 = 12.706 · 0.05 = 0.635, cut at 1
    assert rows[0][auroc] == "0.750 [0.115, 1.000]"
    assert rows[2][header.index("ε")] == "∞"
    lower_bound = header.index("ε lower bound")  # 0.0 and 0.1: not a probability, not cut
    assert rows[0][lower_bound] == "0.05 [-0.59, 0.69]"
    assert "1 run directory without a usable `results.json`" in text
    assert "## Leakage by subgroup" in text and "| sex=F | sex=M |" in text
    # A per-patient figure never stands without its noise floor (issue #7).
    floor = header.index("p99 noise floor")
    assert header[floor - 1] == "patient AUC p99" and rows[0][floor].startswith("0.700")
    assert "max noise floor" not in header  # no run has it: no empty column


def test_markdown_links_every_figure_written_beside_it(epsilon_report):
    text = epsilon_report.markdown.read_text()
    names = {path.name for path in epsilon_report.figures}
    assert names == {
        "sweep_privacy_utility.png",
        "sweep_leakage_vs_epsilon.png",
        "sweep_patient_risk_survival.png",
        "sweep_subgroup_disparity.png",
    }
    for name in names:
        assert f"]({name})" in text
        assert (epsilon_report.markdown.parent / name).stat().st_size > 5_000


def test_html_is_balanced_self_contained_and_its_images_decode(epsilon_report):
    page = epsilon_report.html.read_text()
    assert epsilon_report.html.name == HTML_FILE
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link)\b", page)
    checker = _BalanceChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert {"html", "head", "style", "body", "table", "figure"} <= checker.tags
    assert len(checker.images) == len(epsilon_report.figures) == 4
    for source in checker.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        data = base64.b64decode(source.removeprefix(prefix), validate=True)
        image = Image.open(io.BytesIO(data))
        image.verify()
        assert image.format == "PNG" and min(image.size) > 200 and len(data) > 5_000
    assert "<td>0.750 [" in page and "<td>∞</td>" in page


def test_capacity_sweep_draws_leakage_over_the_model_width(tmp_path):
    for index, (hidden, epsilon) in enumerate(
        [((16,), 8.0), ((64,), 8.0), ((256,), 8.0), ((16,), math.inf), ((256,), math.inf)]
    ):
        write_fake_run(
            tmp_path / "runs" / str(index), epsilon=epsilon, seed=0, auroc=0.7, hidden=hidden
        )
    files = write_sweep_report(load_sweep([tmp_path / "runs"]), out_dir=tmp_path / "out")
    names = {path.name for path in files.figures}
    assert {"sweep_leakage_vs_epsilon.png", "sweep_leakage_vs_model.hidden.png"} <= names
    header, *rows = markdown_table(files.markdown.read_text(), "privacy.epsilon")
    assert header[:3] == ["privacy.epsilon", "model.hidden", "seeds"]
    assert [row[:2] for row in rows] == [
        ["8", "[16]"],
        ["8", "[64]"],
        ["8", "[256]"],
        ["∞", "[16]"],
        ["∞", "[256]"],
    ]
    assert all("(1 seed)" in row[header.index("test AUROC")] for row in rows)


def test_runs_without_an_audit_get_no_audit_columns_or_leakage_figures(tmp_path):
    for index, epsilon in enumerate((1.0, math.inf)):
        write_fake_run(
            tmp_path / "runs" / str(index), epsilon=epsilon, seed=0, auroc=0.7, audit=False
        )
    files = write_sweep_report(load_sweep([tmp_path / "runs"]), out_dir=tmp_path / "out")
    assert [path.name for path in files.figures] == ["sweep_privacy_utility.png"]
    header, *_ = markdown_table(files.markdown.read_text(), "privacy.epsilon")
    assert header == ["privacy.epsilon", "seeds", "ε", "test AUROC"]


def test_an_unwritable_destination_is_a_one_line_config_error(epsilon_sweep, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot write the sweep report .*-o"):
        write_sweep_report(load_sweep([epsilon_sweep]), out_dir=blocker / "out")
    assert not (blocker.parent / MARKDOWN_FILE).exists()
