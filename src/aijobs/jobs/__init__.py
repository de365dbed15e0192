"""The job types aijobs knows, one module each, and lookups by name.

The registry is built from the modules' `JOB_TYPE` constants rather than by self-registration
at import time, so what exists is visible in one place and import order cannot change it.
"""

from __future__ import annotations

from aijobs import errors
from aijobs.jobs import ai_generation, prompt_analysis, review_processing, sentiment_analysis
from aijobs.jobs.base import JobType

_JOB_TYPES: tuple[JobType, ...] = (
    ai_generation.JOB_TYPE,
    review_processing.JOB_TYPE,
    prompt_analysis.JOB_TYPE,
    sentiment_analysis.JOB_TYPE,
)

#: Every registered job type name, in a stable order.
JOB_TYPE_NAMES: tuple[str, ...] = tuple(jt.name for jt in _JOB_TYPES)


class UnknownJobType(errors.UnknownJobType, KeyError):
    """A job names a type this build does not have (bad API input, or a row from a newer build)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown job type {name!r}; known types: {', '.join(JOB_TYPE_NAMES)}",
            type=name,
            known=list(JOB_TYPE_NAMES),
        )

    def __str__(self) -> str:
        # KeyError's own __str__ repr()-quotes the message; keep it readable in API errors.
        return self.message


def registry() -> dict[str, JobType]:
    """All job types keyed by name (a fresh dict: callers may not mutate the registry)."""
    return {jt.name: jt for jt in _JOB_TYPES}


def get_job_type(name: str) -> JobType:
    """The job type called `name`, or `UnknownJobType` naming the ones that exist."""
    for jt in _JOB_TYPES:
        if jt.name == name:
            return jt
    raise UnknownJobType(name)


__all__ = ["JOB_TYPE_NAMES", "JobType", "UnknownJobType", "get_job_type", "registry"]
