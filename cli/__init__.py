"""The command line: Typer parsing, wiring the real edges, exit codes."""
