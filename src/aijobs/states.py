"""The job-state vocabulary, defined once: the statuses a job moves through and the outcomes
an attempt ends with. The database's `aijobs.job_status` enum and `job_attempts.outcome`
check hold the same values (a test compares them); rows, the API and metrics use these."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A job in one of these never changes again (a retry is a new job).
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
#: Pending or processing: what the in-flight quota counts.
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})
#: A cancel of a job in one of these is refused: it has ended and kept its outcome (a
#: cancelled one answers as it is).
UNCANCELLABLE_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
#: A job in one of these may be run again, as a new job charged to its owner.
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Its worker stopped heartbeating; the rescuer took the job back.
    LOST = "lost"
    #: Given back unfinished (shutdown, or a lease it could not renew).
    HANDED_BACK = "handed_back"
    RATE_LIMITED = "rate_limited"
    #: A lost attempt whose late answer arrived after the rescue: recorded, never applied.
    SUPERSEDED = "superseded"
