"""The `aijobs` command line (Typer). One module per group of commands."""

from __future__ import annotations

from aijobs.cli import accounts_cmds, api_cmds, jobs_cmds, system_cmds  # noqa: F401  (register commands)
from aijobs.cli.app import app

__all__ = ["app"]
