"""The sweep report's content as a few plain blocks, and their Markdown form.

One document (headings, paragraphs, tables, images) is built from a `Sweep`; the Markdown and the
HTML renderers both draw it, so the two files always show the same numbers. Each cell is a group's
mean over seeds with its 95 % interval, ``mean [low, high]``, or ``mean (1 seed)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from dptrain.reporting.sweep import Estimate, Sweep, format_value

# (summary key, column header, decimals); what the sweep table shows for every group.
TABLE_COLUMNS = (
    ("privacy/epsilon", "ε", 3),
    ("utility/auroc", "test AUROC", 3),
    ("audit/best_attack_auc", "best attack AUC", 3),
    ("audit/best_attack_tpr_at_fpr_0.001", "TPR @ 0.1 % FPR", 3),
    ("audit/epsilon_lower_bound", "ε lower bound", 2),
    ("audit/dp_max_auc_patient", "DP max patient AUC", 3),
    ("audit/patient_auc_median", "patient AUC median", 3),
    ("audit/patient_auc_p99", "patient AUC p99", 3),
    ("audit/null_patient_auc_p99", "p99 noise floor", 3),
    ("audit/patient_auc_max", "patient AUC max", 3),
    ("audit/null_patient_auc_max", "max noise floor", 3),
    ("audit/patients_exposed_fdr", "FDR-exposed patients", 1),
)
RUN_COLUMNS = (
    ("privacy/epsilon", "ε", 3),
    ("utility/auroc", "test AUROC", 3),
    ("audit/best_attack_auc", "best attack AUC", 3),
    ("audit/patient_auc_max", "patient AUC max", 3),
)
SUBGROUP_THRESHOLD = 0.9  # the share-above threshold shown per subgroup (when the audit has it)


@dataclass(frozen=True)
class Heading:
    """A section heading (level 1 = the title)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Running text; `backticks` mark code."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of text cells (numbers already formatted)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    """A figure: ``name`` is the PNG file name beside the report."""

    name: str
    caption: str


Block = Heading | Paragraph | Table | Image


def format_estimate(value: Estimate, *, decimals: int = 3) -> str:
    """``mean [low, high]``; ``mean (1 seed)`` without an interval; ``–`` when undefined.

    Example:
        >>> format_estimate(Estimate(0.7123, 0.69, 0.734, 3))
        '0.712 [0.690, 0.734]'
        >>> format_estimate(Estimate(float("inf"), float("inf"), float("inf"), 2), decimals=2)
        '∞'
        >>> format_estimate(Estimate(0.5, float("nan"), float("nan"), 1))
        '0.500 (1 seed)'
    """
    if value.n == 0 or math.isnan(value.mean):
        return "–"
    mean = _number(value.mean, decimals)
    if math.isinf(value.mean):
        return mean
    if value.n == 1:
        return f"{mean} (1 seed)"
    if math.isnan(value.low):
        return f"{mean} (no interval)"
    return f"{mean} [{_number(value.low, decimals)}, {_number(value.high, decimals)}]"


def sweep_table(sweep: Sweep) -> Table:
    """A row per group: the swept axes, the number of seeds, then each headline number."""
    columns = _columns(sweep, TABLE_COLUMNS)
    header = (*(axis.key for axis in sweep.axes), "seeds", *(title for _, title, _ in columns))
    rows = tuple(
        (
            *(format_value(group.axis_values[axis.key]) for axis in sweep.axes),
            str(len(group.runs)),
            *(format_estimate(group.metric(key), decimals=d) for key, _, d in columns),
        )
        for group in sweep.groups
    )
    return Table(header=header, rows=rows)


def subgroup_table(sweep: Sweep) -> Table | None:
    """Per group, the share of each subgroup's patients above the risk threshold; None if none."""
    suffix = subgroup_share_suffix(sweep)
    if suffix is None:
        return None
    keys = list(
        dict.fromkeys(
            key
            for run in sweep.runs
            for key in run.summary
            if key.startswith("subgroup/") and key.endswith(suffix)
        )
    )
    header = (
        *(axis.key for axis in sweep.axes),
        *(key.removeprefix("subgroup/").removesuffix(suffix) for key in keys),
    )
    rows = tuple(
        (
            *(format_value(group.axis_values[axis.key]) for axis in sweep.axes),
            *(format_estimate(group.metric(key)) for key in keys),
        )
        for group in sweep.groups
    )
    return Table(header=header, rows=rows)


def subgroup_share_suffix(sweep: Sweep) -> str | None:
    """The summary-key suffix of the per-subgroup share shown (``/share_above_0.9``), if any."""
    thresholds = sorted(
        {
            float(key.rsplit("_", 1)[1])
            for run in sweep.runs
            for key in run.summary
            if key.startswith("subgroup/") and "/share_above_" in key
        }
    )
    if not thresholds:
        return None
    chosen = SUBGROUP_THRESHOLD if SUBGROUP_THRESHOLD in thresholds else thresholds[0]
    return f"/share_above_{chosen:g}"


def runs_table(sweep: Sweep, *, relative_to: Path | None = None) -> Table:
    """A row per run (its directory and seed, and the numbers it wrote) for checking by hand."""
    columns = _columns(sweep, RUN_COLUMNS)
    rows = tuple(
        (
            _location(run.run_dir, relative_to),
            str(run.seed),
            *(_number(run.summary.get(key), decimals) for key, _, decimals in columns),
        )
        for group in sweep.groups
        for run in group.runs
    )
    return Table(header=("run", "seed", *(title for _, title, _ in columns)), rows=rows)


def sweep_document(
    sweep: Sweep, *, images: dict[str, str], relative_to: Path | None = None
) -> tuple[Block, ...]:
    """The whole report as blocks.

    Args:
        sweep: The aggregated sweep.
        images: PNG file name -> caption, in the order to show them.
        relative_to: Run directories are named relative to this folder (the report's).

    Returns:
        The blocks, top to bottom.
    """
    n_runs = len(sweep.runs)
    axes = (
        "; ".join(
            f"`{axis.key}` ∈ {{{', '.join(map(format_value, axis.values))}}}" for axis in sweep.axes
        )
        or "none (the runs differ only in seed)"
    )
    blocks: list[Block] = [
        Heading("Sweep report", level=1),
        Paragraph(
            f"{n_runs} finished run{'s' * (n_runs != 1)} in {len(sweep.groups)} "
            f"group{'s' * (len(sweep.groups) != 1)}. Swept: {axes}."
        ),
        Paragraph(
            f"Each cell is the mean over a group's seeds with its {sweep.confidence:.0%} "
            "Student-t interval over seeds, `mean [low, high]`; `(1 seed)` marks a number from a "
            "single run. ε is the budget the run spent; ε = ∞ is the non-private baseline "
            "trained with the same recipe. The audit's numbers are patient-level: the best "
            "attack's AUC and TPR at 0.1 % FPR, the empirical ε lower bound, the largest patient "
            "AUC that (ε, δ)-DP allows, and the distribution of per-patient AUCs beside its noise "
            "floor (the same figure with the membership effect removed by re-labelling the model "
            "pairs: a per-patient AUC is evidence of leakage only above its floor) and the "
            "patients detectably exposed at the audit's false-discovery rate."
        ),
        sweep_table(sweep),
    ]
    if images:
        blocks.append(Heading("Figures"))
        blocks += [Image(name=name, caption=caption) for name, caption in images.items()]
    subgroups = subgroup_table(sweep)
    if subgroups is not None:
        threshold = subgroup_share_suffix(sweep).removeprefix("/share_above_")
        blocks += [
            Heading("Leakage by subgroup"),
            Paragraph(
                f"Share of each subgroup's patients whose membership AUC is above {threshold}."
            ),
            subgroups,
        ]
    blocks += [
        Heading("Runs"),
        Paragraph("Each run's own numbers, as its `results.json` summary gives them."),
        runs_table(sweep, relative_to=relative_to),
    ]
    if sweep.skipped:
        blocks += [
            Heading("Left out"),
            Paragraph(
                f"{len(sweep.skipped)} run director{'ies' if len(sweep.skipped) > 1 else 'y'} "
                "without a usable `results.json` (failed, unfinished, or an older schema):"
            ),
            Table(
                header=("run", "reason"),
                rows=tuple(
                    (_location(skip.run_dir, relative_to), skip.reason.split(": ", 1)[-1])
                    for skip in sweep.skipped
                ),
            ),
        ]
    return tuple(blocks)


def render_markdown(blocks: tuple[Block, ...]) -> str:
    """The blocks as GitHub-flavoured Markdown (images referenced by file name)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(_markdown_table(block))
        else:
            parts.append(f"![{block.caption}]({block.name})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: Table) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(table.header), "|" + "---|" * len(table.header), *map(line, table.rows)])


def _columns(sweep: Sweep, columns: tuple) -> tuple:
    """The columns some run has a number for (no audit columns for runs without an audit)."""
    return tuple(
        column for column in columns if any(column[0] in run.summary for run in sweep.runs)
    )


def _number(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{decimals}f}"


def _location(run_dir: Path, relative_to: Path | None) -> str:
    if relative_to is None:
        return str(run_dir)
    try:
        return os.path.relpath(Path(run_dir).resolve(), Path(relative_to).resolve())
    except ValueError:  # another drive (Windows)
        return str(run_dir)
