"""The `zoo` command line: a thin Typer layer over the zoo package."""
