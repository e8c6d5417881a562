"""The `docpipe` command (``main`` is the console script)."""

from docpipe.client.cli.root import app, main

__all__ = ["app", "main"]
