"""Plain box tables for the audit commands, drawn as rich draws its default table, without rich.

Laying out a long table with rich (and importing it) took longer than most audit questions take
to answer (docs/performance.md); these tables are a few columns of
short text, so a direct layout does: natural column widths, the widest wrappable columns narrowed
(their text folded onto more lines) when the table is wider than the screen, and colours only on a
terminal. Piped with no COLUMNS set there is no screen: the table is as wide as its rows. The
frame is rich's HEAVY_HEAD box, so the tables read as before.
"""

from __future__ import annotations

import sys
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from stepledger.engine.read.terminal_text import printable

ANSI = {"green": "32", "red": "31", "yellow": "33", "white": "37", "bold": "1", "italic": "3"}


@dataclass(frozen=True)
class Cell:
    """A cell's text and, on a terminal, its colour (a key of ANSI)."""

    text: str
    style: str = ""


def cell_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide East Asian characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def _fit(widths: list[int], wrappable: list[bool], limit: int) -> list[int]:
    """Column widths whose sum is at most `limit`, narrowing the widest wrappable columns first."""
    widths = list(widths)
    excess = sum(widths) - limit
    while excess > 0:
        candidates = [i for i, ok in enumerate(wrappable) if ok and widths[i] > 1]
        if not candidates:
            break
        widest = max(candidates, key=widths.__getitem__)
        others = [widths[i] for i in candidates if i != widest]
        # Down to the next widest column (or by all of the excess), so wide columns share the cut.
        cut = min(excess, max(1, widths[widest] - max(others, default=0)), widths[widest] - 1)
        widths[widest] -= cut
        excess -= cut
    return widths


def _lines(text: str, width: int) -> list[str]:
    if cell_width(text) <= width:
        return [text]
    lines = textwrap.wrap(text, width, break_long_words=True, replace_whitespace=False, drop_whitespace=True)
    return lines or [""]


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{ANSI[style]}m{text}\x1b[0m" if colour and style in ANSI and text.strip() else text


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    no_wrap: Sequence[bool],
    title: str = "",
    width: int | None = None,
    colour: bool = False,
) -> str:
    """The table as text: title, heavy header, one line (or more, for folded text) per row; `width`
    None: as wide as the rows."""
    # Cells hold text from the log (step ids, errors): escape sequences are shown, not acted on.
    headers = [printable(h) for h in headers]
    rows = [[Cell(printable(c.text), c.style) for c in row] for row in rows]
    title = printable(title)
    natural = [cell_width(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], cell_width(cell.text))
    # Each column has a space on each side and one border to its left, plus the last border.
    limit = sum(natural) if width is None else width - 3 * len(headers) - 1
    inner = _fit(natural, [not n for n in no_wrap], limit)
    out = []
    if title:
        out.append(_paint(title, "italic", colour))
    out.append("┏" + "┳".join("━" * (w + 2) for w in inner) + "┓")
    out += _row_lines([Cell(h, "bold") for h in headers], inner, "┃", colour)
    out.append("┡" + "╇".join("━" * (w + 2) for w in inner) + "┩")
    for row in rows:
        out += _row_lines(row, inner, "│", colour)
    out.append("└" + "┴".join("─" * (w + 2) for w in inner) + "┘")
    return "\n".join(out) + "\n"


def _row_lines(cells: Sequence[Cell], widths: list[int], bar: str, colour: bool) -> list[str]:
    wrapped = [_lines(cell.text, w) for cell, w in zip(cells, widths, strict=True)]
    height = max(len(lines) for lines in wrapped)
    lines = []
    for n in range(height):
        parts = []
        for cell, cell_lines, w in zip(cells, wrapped, widths, strict=True):
            text = cell_lines[n] if n < len(cell_lines) else ""
            parts.append(" " + _paint(text, cell.style, colour) + " " * (w - cell_width(text) + 1))
        lines.append(bar + bar.join(parts) + bar)
    return lines


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], no_wrap: Sequence[bool], title: str = ""
) -> None:
    """Print the table to stdout: as wide as the terminal (with colours) or COLUMNS, else unbounded."""
    terminal = sys.stdout.isatty()
    sys.stdout.write(render(headers, rows, no_wrap, title=title, width=output_width(), colour=terminal))


def output_width() -> int | None:
    """The width a table may take: the terminal's, COLUMNS when set, or None (no limit) when piped."""
    import os
    import shutil

    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None
