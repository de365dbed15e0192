"""Domain errors shared by every layer. Each names what was wrong, so callers can say so."""

from __future__ import annotations

from typing import Any


class AijobsError(Exception):
    """Base of every refusal aijobs makes on purpose."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UnknownJobType(AijobsError):
    code = "unknown_job_type"


class JobTypeDisabled(AijobsError):
    """The type exists but is switched off in this deployment: creations are refused (nothing
    is charged) and its pending jobs are kept until it is enabled again."""

    code = "job_type_disabled"


class UnknownUser(AijobsError):
    code = "unknown_user"


class InsufficientCredits(AijobsError):
    code = "insufficient_credits"

    @property
    def balance(self) -> int:
        return int(self.details.get("balance", 0))

    @property
    def cost(self) -> int:
        return int(self.details.get("cost", 0))


class TooManyInFlight(AijobsError):
    """The user's cap on jobs pending or processing is reached (nothing was charged)."""

    code = "too_many_jobs_in_flight"

    @property
    def in_flight(self) -> int:
        return int(self.details.get("in_flight", 0))

    @property
    def limit(self) -> int:
        return int(self.details.get("limit", 0))


class NotRetryable(AijobsError):
    """Only a failed or cancelled job is run again (as a new, charged job)."""

    code = "not_retryable"


class Forbidden(AijobsError):
    code = "forbidden"


class InvalidPayload(AijobsError):
    """A payload failed validation; `errors` lists each field and the reason."""

    code = "invalid_payload"

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.details.get("errors", []))


class InvalidArgument(AijobsError):
    code = "invalid_argument"


class IdempotencyKeyReused(AijobsError):
    """The key already stands for another request (a grant of another amount, say)."""

    code = "idempotency_key_reused"


class MissingExtra(ImportError):
    """A feature's optional dependencies are not installed; the message names the extra."""

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra, which is not installed: pip install 'aijobs[{extra}]'"
        )
        self.extra = extra
