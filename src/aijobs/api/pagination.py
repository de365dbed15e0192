"""Opaque cursors for keyset pagination.

A cursor is the position of the last row of a page, base64url-encoded. It is opaque so that
clients cannot depend on its shape; decoding a tampered one is a 422 naming `query.cursor`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from aijobs.api.problems import invalid


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("query.cursor", "not a cursor this API issued") from None


def job_cursor(created_at: datetime, job_id: UUID) -> str:
    return _encode(f"j|{created_at.isoformat()}|{job_id}")


def parse_job_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    parts = _decode(cursor).split("|")
    try:
        if len(parts) != 3 or parts[0] != "j":
            raise ValueError
        created_at = datetime.fromisoformat(parts[1])
        if created_at.tzinfo is None:
            raise ValueError
        return created_at, UUID(parts[2])
    except ValueError:
        raise invalid("query.cursor", "not a cursor this API issued") from None


def ledger_cursor(entry_id: int) -> str:
    return _encode(f"l|{entry_id}")


def parse_ledger_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    parts = _decode(cursor).split("|")
    try:
        if len(parts) != 2 or parts[0] != "l":
            raise ValueError
        value = int(parts[1])
        if not 0 < value < 2**63:
            raise ValueError
        return value
    except ValueError:
        raise invalid("query.cursor", "not a cursor this API issued") from None
