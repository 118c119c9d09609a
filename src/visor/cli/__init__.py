"""The ``visor`` command line: thin commands over the library."""

from visor.cli.main import main

__all__ = ["main"]
