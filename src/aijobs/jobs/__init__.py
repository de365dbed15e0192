"""Job types: the public API to define them, and the registry of this process's types.

```python
from aijobs.jobs import JobContext, Output, Payload, job_type

class Ping(Payload):
    url: str

class Pong(Output):
    status: int

@job_type("ping", cost=1, payload=Ping, output=Pong, timeout_seconds=10)
async def ping(payload: Ping, ctx: JobContext) -> Pong:
    ...  # any async code: an HTTP call, an email, an LLM through ctx.provider
```

Register with `AIJOBS_JOB_TYPES=myapp.jobs` or an `aijobs.job_types` entry point, then run
`aijobs migrate` (which copies names, costs and time limits into the database). The tutorial
is docs/job-types.md.
"""

from __future__ import annotations

from aijobs import errors
from aijobs.jobs.account import AccountSettings
from aijobs.jobs.base import (
    HandlerResult,
    InvalidOutput,
    JobContext,
    JobType,
    JobTypeError,
    Retry,
    preview,
    run_task,
)
from aijobs.jobs.define import job_type, llm_job
from aijobs.jobs.fields import Output, Payload
from aijobs.jobs.registry import ENTRY_POINT_GROUP, ENV_VAR, configure, current, load_job_types, registered

#: The built-in type names, in a stable order (a deployment may add its own: `job_type_names()`).
JOB_TYPE_NAMES: tuple[str, ...] = (
    "ai_generation",
    "review_processing",
    "prompt_analysis",
    "sentiment_analysis",
)


class UnknownJobType(errors.UnknownJobType, KeyError):
    """A job names a type this process does not have (bad API input, or a type registered
    only in other processes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        known = job_type_names()
        super().__init__(
            f"unknown job type {name!r}; known types: {', '.join(known)}",
            type=name,
            known=list(known),
        )

    def __str__(self) -> str:
        # KeyError's own __str__ repr()-quotes the message; keep it readable in API errors.
        return self.message


def registry() -> dict[str, JobType]:
    """All job types keyed by name (a fresh dict: callers may not mutate the registry)."""
    return dict(current())


def job_type_names() -> tuple[str, ...]:
    """Every registered job type name: the built-ins first, then yours in loading order."""
    return tuple(current())


def get_job_type(name: str) -> JobType:
    """The job type called `name`, or `UnknownJobType` naming the ones that exist."""
    found = current().get(name)
    if found is None:
        raise UnknownJobType(name)
    return found


def max_attempts_for(name: str, default: int) -> int:
    """How many attempts a new job of type `name` gets: its type's `Retry.max_attempts`, else
    the deployment's `default` (MAX_RETRIES + 1; an unknown type is refused later anyway)."""
    found = current().get(name)
    return (found.retry.max_attempts if found else None) or default


__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "JOB_TYPE_NAMES",
    "AccountSettings",
    "HandlerResult",
    "InvalidOutput",
    "JobContext",
    "JobType",
    "JobTypeError",
    "Output",
    "Payload",
    "Retry",
    "UnknownJobType",
    "configure",
    "get_job_type",
    "job_type",
    "job_type_names",
    "llm_job",
    "load_job_types",
    "max_attempts_for",
    "preview",
    "registered",
    "registry",
    "run_task",
]
