"""How aijobs writes JSON to PostgreSQL: one encoder for every connection it uses."""

from __future__ import annotations

import json
from typing import Any

import orjson
from psycopg.types.json import Jsonb


def json_dumps(obj: Any) -> bytes | str:
    """orjson where it can: the worker's batched finish rows are JSON, and the standard
    library's encoder cost it a noticeable share of its CPU per job (docs/benchmarks.md).
    What orjson refuses (integers past 64 bits, non-string keys) goes through `json`, so
    nothing new is rejected.

    Reading stays on `json.loads`: orjson reads 1e400 as an error and a 30-digit integer
    as a float, and a payload written straight through the SQL function must never make a
    claimed batch unreadable."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj)


def jsonb(obj: Any) -> Jsonb:
    """`obj` as jsonb, encoded by `json_dumps` whatever the connection is configured with,
    so a caller's own connection (`SyncSession`) keeps its configuration untouched."""
    return Jsonb(obj, dumps=json_dumps)
