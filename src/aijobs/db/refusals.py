"""Refusals raised by the SQL functions (SQLSTATE class AJ, see schema.sql), as domain errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from aijobs import errors

_SQLSTATE_ERRORS: dict[str, type[errors.AijobsError]] = {
    "AJ001": errors.UnknownJobType,
    "AJ002": errors.UnknownUser,
    "AJ003": errors.InsufficientCredits,
    "AJ004": errors.Forbidden,
    "AJ005": errors.InvalidArgument,
    "AJ006": errors.TooManyInFlight,
    "AJ007": errors.JobTypeDisabled,
    "AJ008": errors.IdempotencyKeyReused,
    "42501": errors.Forbidden,  # insufficient_privilege: e.g. `anon` calling a function
}


@contextmanager
def refusals() -> Iterator[None]:
    """Re-raise a typed refusal from SQL as its domain error; anything else unchanged."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from None


def translate(exc: psycopg.Error) -> errors.AijobsError | None:
    """Map a typed refusal from SQL to its domain error (None for anything else)."""
    return _refusal(exc.sqlstate or "", exc.diag.message_primary or str(exc), exc.diag.message_detail)


def _refusal(sqlstate: str, message: str, detail: str | None) -> errors.AijobsError | None:
    kind = _SQLSTATE_ERRORS.get(sqlstate)
    if kind is None:
        return None
    details: dict[str, Any] = {}
    if detail:
        try:
            parsed = json.loads(detail)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            details = parsed
    return kind(message, **details)


def element_error(sqlstate: str, message: str, detail: str | None) -> Exception:
    """An error one element of a grouped statement reported in its row, as the error the
    statement would have raised alone: the domain refusal for an AJ code, otherwise
    psycopg's class for that SQLSTATE (so the API answers it as it would have)."""
    mapped = _refusal(sqlstate, message, detail)
    if mapped is not None:
        return mapped
    try:
        kind = psycopg.errors.lookup(sqlstate)
    except KeyError:
        kind = psycopg.DatabaseError
    return kind(f"{message} (SQLSTATE {sqlstate})")
