"""The command line: ``codex-orchestrator start | doctor | --version``.

``codex-orchestrator`` alone runs the bot as ``start`` does (with ``$CODEX_CONF_PATH`` or
the default config file), as the original product's did: a service or a habit that runs
the bare command keeps working.

Typer only parses and maps outcomes to exit codes; the work lives in `cli.start` and
`cli.doctor`, imported inside the commands so that ``--help`` and ``--version`` stay fast
(trio, httpx and mcp are not imported for them).

Exit codes: 0 success (or a graceful drain), 1 failure (a supervisor gave up, a doctor check
failed, among them Telegram rejecting the token or being unreachable), 2 a configuration error
(one line naming file, key and fix; ``doctor`` names the same file and key in its table and
exits 2 too) and, for ``start``, a token Telegram rejected (``start`` waits for a Telegram it
cannot reach instead of exiting), 128 + signal when a second signal forced the stop.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Final

import typer

from orchestrator import __version__

__all__ = ["EXIT_CONFIG", "app", "main"]

EXIT_CONFIG: Final = 2

app = typer.Typer(
    name="codex-orchestrator",
    help="Drive OpenAI Codex from Telegram: warm Codex workers, live progress, real cancel.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rendering it with rich costs ~0.3 s of imports on every --help.
    rich_markup_mode=None,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $CODEX_CONF_PATH, else ~/.codex-orchestrator/conf.toml).",
        dir_okay=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"codex-orchestrator {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version),
    ] = False,
) -> None:
    """Drive OpenAI Codex from Telegram (alone: the same as start)."""
    if context.invoked_subcommand is None:
        start(config=None, log_level=None)


@app.command()
def start(
    config: ConfigOption = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: from config)."),
    ] = None,
) -> None:
    """Run the bot until SIGINT/SIGTERM, or SIGHUP (the first drains, a second forces)."""
    from orchestrator.config import load_config
    from orchestrator.errors import ConfigError

    try:
        loaded = load_config(config)
    except ConfigError as error:
        typer.echo(f"codex-orchestrator: {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    level = (log_level or loaded.config.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        typer.echo(
            f"codex-orchestrator: --log-level: unknown level {log_level!r}. "
            "Fix: use DEBUG, INFO, WARNING or ERROR",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    from orchestrator.edges.http1_proxy import PROXY_FIX, proxy_problem

    bad_proxy = proxy_problem(loaded.config.telegram.api_base_url)
    if bad_proxy is not None:
        typer.echo(f"codex-orchestrator: {bad_proxy}. Fix: {PROXY_FIX}", err=True)
        raise typer.Exit(EXIT_CONFIG)

    from cli.start import run

    raise typer.Exit(run(loaded, log_level=level))


@app.command()
def doctor(config: ConfigOption = None) -> None:
    """Check the config, the token, Telegram, Codex, its login and the worker pool.

    Prints a table with a fix for every failed check; exits 2 on a configuration error (as
    start does), 1 when another check failed, 0 when all passed. Run it first.
    """
    from cli.doctor import run_doctor

    raise typer.Exit(run_doctor(config))


def main() -> None:
    """Console entry point."""
    if sys.argv[1:] == ["--version"]:
        # Typer 0.29 coerces every parsed parameter through pydantic, ~0.2 s of imports;
        # printing the version needs none of that (the option stays for --help and tests).
        typer.echo(f"codex-orchestrator {__version__}")
        return
    sys.exit(app())  # pragma: no cover - typer exits itself
