"""The Typer app: every command module registers on it (``@app.command()``).

Apart from ``cli/__init__.py`` (which imports the command modules and maps errors),
so a command module imports the app without importing its importer.
"""

from __future__ import annotations

import typer

from locallama import __version__

app = typer.Typer(
    name="locallama",
    help="Run open-weight language models on your own machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"locallama version {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-v", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Run open-weight language models on your own machine."""
