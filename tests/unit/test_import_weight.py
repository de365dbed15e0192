"""The CLI's commands that only touch the database start without the HTTP stack."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_cli_loads_neither_fastapi_nor_uvicorn_nor_the_http_models() -> None:
    loaded = loaded_after("import aijobs.cli")
    assert "aijobs.cli.jobs_cmds" in loaded  # the commands were registered
    assert not {"fastapi", "uvicorn", "starlette", "aijobs.api.models", "aijobs.api.app"} & loaded


def test_importing_the_api_package_loads_nothing_of_it() -> None:
    loaded = loaded_after("import aijobs.api")
    assert "fastapi" not in loaded and "aijobs.api.app" not in loaded
