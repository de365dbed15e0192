"""What a caller asks for when it creates jobs or grants credits, validated the same way by the
HTTP API (whose models extend these) and the CLI (`enqueue-batch` lines, `accounts`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, field_validator

#: The most credits one grant may add.
MAX_CREDIT_GRANT = 1_000_000_000
#: What the database stores as a time (the aijobs.instant domain): from 1970 to before 9999.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _date_time_text(value: object) -> object:
    """A time is an RFC 3339 string, as the schema says: pydantic alone would also take a
    number, or a string of digits, as seconds since 1970, which the published schema refuses."""
    if isinstance(value, int | float):
        raise ValueError("must be a date-time string with a UTC offset, not a number")
    if isinstance(value, str) and not _DATE_TIME_START.match(value):
        raise ValueError("must be a date-time string with a UTC offset (2030-01-01T09:00:00Z)")
    return value


#: How an RFC 3339 date-time begins (pydantic checks the rest).
_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


class JobRequest(BaseModel):
    """One job to create. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_]*$", description="A job type name."
    )
    payload: dict[str, Any] = Field(description="The job type's payload (see GET /api/job-types).")
    # Strict: JSON `true` is not the integer 1 (lax mode would take it, and the schema says integer).
    priority: StrictInt = Field(0, ge=-100, le=100, description="Higher runs first among your own jobs.")
    run_at: Annotated[AwareDatetime | None, BeforeValidator(_date_time_text)] = Field(
        None, description="Not before this time (with a UTC offset); from 1970 to before 9999."
    )
    max_attempts: StrictInt | None = Field(None, ge=1, le=100, description="Default: MAX_RETRIES + 1.")

    @field_validator("run_at")
    @classmethod
    def _run_at_in_range(cls, value: datetime | None) -> datetime | None:
        """Normalised to UTC, within what the database stores (and every reader can load)."""
        if value is None:
            return None
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must be from 1970 to before 9999 in UTC") from None
        if not EARLIEST <= utc < LATEST:
            raise ValueError("must be from 1970 to before 9999 in UTC")
        return utc
