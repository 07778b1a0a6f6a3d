"""Writes the sweep report: ``sweep_report.md`` with its PNG figures, and ``sweep_report.html``.

Every file is written atomically (temporary file, rename), figures first and the two reports
last, so a report that exists never points at a missing or half-written figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dptrain.atomic import atomic_write, atomic_write_text
from dptrain.errors import ConfigError
from dptrain.reporting.sweep import Sweep, load_sweep
from dptrain.reporting.sweep_html import render_html
from dptrain.reporting.sweep_markdown import render_markdown, sweep_document
from dptrain.reporting.sweep_plots import figure_png, sweep_figures

MARKDOWN_FILE = "sweep_report.md"
HTML_FILE = "sweep_report.html"


@dataclass(frozen=True)
class SweepReportFiles:
    """What `write_sweep_report` wrote.

    Attributes:
        markdown: ``sweep_report.md``.
        html: ``sweep_report.html`` (self-contained).
        figures: The PNG files beside the Markdown report.
    """

    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def write_sweep_report(sweep: Sweep, *, out_dir: str | Path) -> SweepReportFiles:
    """Draws the figures and writes both reports into ``out_dir`` (created if missing).

    Args:
        sweep: The aggregated sweep (see `dptrain.reporting.sweep.load_sweep`).
        out_dir: Destination folder.

    Returns:
        The written files.

    Raises:
        ConfigError: If ``out_dir`` cannot be created or written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        captions, images = {}, {}
        for name, (caption, figure) in sweep_figures(sweep).items():
            captions[name], images[name] = caption, figure_png(figure)
        figures = tuple(
            atomic_write(out_dir / name, lambda file, data=data: file.write(data))
            for name, data in images.items()
        )
        blocks = sweep_document(sweep, images=captions, relative_to=out_dir)
        markdown = atomic_write_text(out_dir / MARKDOWN_FILE, render_markdown(blocks))
        page = atomic_write_text(out_dir / HTML_FILE, render_html(blocks, images=images))
    except OSError as error:
        raise ConfigError(
            f"cannot write the sweep report into {error.filename or out_dir} "
            f"({error.strerror or error}): choose another folder with -o"
        ) from error
    return SweepReportFiles(markdown=markdown, html=page, figures=figures)


def report_sweep(
    paths: list[str | Path] | tuple[str | Path, ...], *, out_dir: str | Path | None = None
) -> tuple[Sweep, SweepReportFiles]:
    """Loads the runs under ``paths`` and writes their sweep report.

    Args:
        paths: Run directories, ``results.json`` files, or folders (a multirun root) to search.
        out_dir: Destination; default the deepest folder containing every path.

    Returns:
        The sweep and the written files.

    Raises:
        DataError: If a path is missing or no finished run is found.
        ConfigError: If the report cannot be written.
    """
    sweep = load_sweep(paths)
    if out_dir is None:
        folders = [
            Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent for p in paths
        ]
        out_dir = Path(os.path.commonpath(folders))
    return sweep, write_sweep_report(sweep, out_dir=out_dir)
