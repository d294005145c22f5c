"""The `stepledger` command line: one Typer app that gathers the command groups."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Crash-safe workstream orchestrator.")


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("stepledger"))


def main() -> None:
    """Entry point of the console script."""
    app()
