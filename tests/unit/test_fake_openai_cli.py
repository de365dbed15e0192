"""`aijobs fake-openai` and `python -m aijobs.providers.fake_openai` take the same options."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from aijobs.cli import app
from aijobs.providers import fake_openai

OPTION = re.compile(r"--[a-z][a-z-]+")


def test_the_cli_command_takes_every_option_of_the_module(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fake_openai.main(["--help"])
    module = set(OPTION.findall(capsys.readouterr().out)) - {"--help"}
    result = CliRunner().invoke(app, ["fake-openai", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    command = set(OPTION.findall(result.output))
    assert "--stream-interval-ms" in module
    assert module <= command, f"missing from `aijobs fake-openai`: {sorted(module - command)}"
