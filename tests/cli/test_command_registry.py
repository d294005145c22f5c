"""The command line registers only the module of the command it runs; the map must stay whole."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from stepledger.cli.app import COMMAND_MODULES, build_app


def top_level_names(app: typer.Typer) -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_the_map_names_exactly_the_commands_each_module_registers() -> None:
    everything = top_level_names(build_app())
    assert everything == {n for names in COMMAND_MODULES.values() for n in names} | {"version"}
    for names in COMMAND_MODULES.values():
        for name in names:
            assert top_level_names(build_app(name)) == set(names) | {"version"}


def test_help_and_unknown_commands_see_every_command() -> None:
    assert top_level_names(build_app("--help")) == top_level_names(build_app())
    result = subprocess.run(
        [sys.executable, "-m", "stepledger.cli", "rnu"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "No such command" in result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "stepledger.cli", "--help"], capture_output=True, text=True
    )
    for names in COMMAND_MODULES.values():
        assert all(name in listing.stdout for name in names)
