"""Named queries, loaded once from the `.sql` files beside this module.

Each query starts with a `-- name: <name>` line (procrastinate's convention). The text is
sent as written; parameters travel separately, so no query is ever assembled from input.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a file of named queries into {name: sql}."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


@cache
def all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("aijobs.db") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in parse(entry.read_text(encoding="utf-8")).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files")
                queries[name] = body
    return queries


def query(name: str) -> sql.SQL:
    """The named query as a psycopg SQL object (a KeyError names an unknown query)."""
    return sql.SQL(all_queries()[name])
