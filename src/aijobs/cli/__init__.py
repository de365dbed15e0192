"""The `aijobs` command line (Typer). One module per group of commands."""

from __future__ import annotations

from aijobs.cli import (  # noqa: F401  (register commands)
    accounts_cmds,
    api_cmds,
    check_cmds,
    fake_openai_cmd,
    jobs_cmds,
    system_cmds,
    types_cmds,
)
from aijobs.cli.app import app, main

__all__ = ["app", "main"]
