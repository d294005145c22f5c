"""The audit's box tables (cli/text_table.py): rich's default look, narrowed to the screen, colours
only on a terminal."""

from __future__ import annotations

from stepledger.cli.text_table import Cell, cell_width, render


def test_a_table_reads_as_rich_draws_it() -> None:
    text = render(["step", "#"], [[Cell("build"), Cell("1")], [Cell("lint"), Cell("12")]], [False, False],
                  title="r1 · 2 attempts")  # fmt: skip
    assert text == (
        "r1 · 2 attempts\n"
        "┏━━━━━━━┳━━━━┓\n"
        "┃ step  ┃ #  ┃\n"
        "┡━━━━━━━╇━━━━┩\n"
        "│ build │ 1  │\n"
        "│ lint  │ 12 │\n"
        "└───────┴────┘\n"
    )


def test_too_wide_a_table_folds_its_widest_wrappable_column() -> None:
    long = "word " * 20
    rows = [[Cell("2027-01-15 08:00:01"), Cell(long.strip())]]
    text = render(["when", "detail"], rows, no_wrap=[True, False], width=50)
    lines = text.splitlines()
    assert all(cell_width(line) <= 50 for line in lines)
    assert len(lines) > 5  # the detail takes several lines
    assert "│ 2027-01-15 08:00:01 │" in lines[3]  # the no-wrap column keeps its width
    assert " ".join(line.split("│")[2].strip() for line in lines[3:-1]) == long.strip()


def test_colours_only_when_asked_and_never_for_the_text_itself() -> None:
    rows = [[Cell("passed", "green"), Cell("[red]not markup[/]")]]
    plain = render(["outcome", "reason"], rows, [False, False])
    assert "\x1b[" not in plain and "[red]not markup[/]" in plain
    coloured = render(["outcome", "reason"], rows, [False, False], colour=True)
    assert "\x1b[32mpassed\x1b[0m" in coloured and "\x1b[1moutcome\x1b[0m" in coloured
    # Colour codes take no room: the frame lines up with the plain table's.
    assert [len(line) for line in plain.splitlines()][1] == len(coloured.splitlines()[0])


def test_wide_characters_take_two_columns() -> None:
    assert cell_width("abc") == 3 and cell_width("日本") == 4 and cell_width("e\u0301") == 1
    text = render(["名前"], [[Cell("ab")]], [False])
    assert text.splitlines()[0] == "┏━━━━━━┓"
    assert text.splitlines()[3] == "│ ab   │"
