"""The sweep report as one self-contained HTML file: inline CSS, figures as base64 data URIs.

The file needs no server and loads nothing from the network, so it can be mailed, attached to a
ticket or opened from a hospital's air-gapped share.
"""

from __future__ import annotations

import base64
import html
import re

from dptrain.reporting.sweep_markdown import Block, Heading, Image, Paragraph, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 560px; width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 560px; }
code { background: #f6f6f6; padding: 0 0.2em; }
.scroll { overflow-x: auto; }
""".strip()


def render_html(blocks: tuple[Block, ...], *, images: dict[str, bytes]) -> str:
    """The blocks as one HTML document.

    Args:
        blocks: The report (see `sweep_markdown.sweep_document`).
        images: PNG file name -> PNG bytes, for every `Image` block.

    Returns:
        The document's text.

    Raises:
        KeyError: If an image block names a figure not in ``images``.
    """
    title = next((block.text for block in blocks if isinstance(block, Heading)), "Sweep report")
    body = []
    figures: list[str] = []
    for block in blocks:
        if not isinstance(block, Image) and figures:
            body.append("<div>\n" + "\n".join(figures) + "\n</div>")
            figures = []
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(_table(block))
        else:
            data = base64.b64encode(images[block.name]).decode("ascii")
            figures.append(
                f'<figure><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(block.caption)}">'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
    if figures:
        body.append("<div>\n" + "\n".join(figures) + "\n</div>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _table(table: Table) -> str:
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in table.rows
    )
    return (
        f'<div class="scroll"><table>\n<thead><tr>{header}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table></div>"
    )


def _inline(text: str) -> str:
    """Escapes text and turns `backticks` into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))
