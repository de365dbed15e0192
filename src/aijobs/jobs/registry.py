"""Which job types this process has: the built-ins, then yours.

Yours come from `AIJOBS_JOB_TYPES` (comma-separated import paths: `myapp.jobs` takes every
`JobType` defined at the top of that module, `myapp.jobs:translate_review` one of them) and
from the `aijobs.job_types` entry-point group of installed packages. The worker, the API and
the CLI load them the same way at start; any problem (an import that fails, a bad cost, two
types with one name) stops the process with the type's name and the reason.

The registry is per process, as Celery's or procrastinate's app is: the creation path, the
worker and the API all look types up by name, and a type cannot differ between them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from types import ModuleType

from aijobs.jobs.base import JobType, JobTypeError

ENV_VAR = "AIJOBS_JOB_TYPES"
ENTRY_POINT_GROUP = "aijobs.job_types"
BUILTIN_MODULES = (
    "aijobs.jobs.ai_generation",
    "aijobs.jobs.review_processing",
    "aijobs.jobs.prompt_analysis",
    "aijobs.jobs.sentiment_analysis",
)

_current: dict[str, JobType] | None = None


def builtin_job_types() -> list[JobType]:
    """The four types aijobs ships, written with the same public API as yours."""
    return [jt for path in BUILTIN_MODULES for jt in _from_module(importlib.import_module(path))]


def parse_paths(value: str | Sequence[str]) -> list[str]:
    """`AIJOBS_JOB_TYPES` as a list of import paths (blank items ignored)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def load_job_types(paths: str | Sequence[str] = (), *, use_entry_points: bool = True) -> dict[str, JobType]:
    """The built-ins, the types at `paths` and those of the entry points, keyed by name.
    Raises `JobTypeError` naming the type (or the path that failed) and the reason."""
    found: dict[str, tuple[JobType, str]] = {}

    def add(types: Iterable[JobType], source: str) -> None:
        for jt in types:
            seen = found.get(jt.name)
            if seen is not None and seen[0] is not jt:
                raise JobTypeError(jt.name, f"defined twice: in {seen[1]} and in {source}")
            found.setdefault(jt.name, (jt, source))

    add(builtin_job_types(), "aijobs (built-in)")
    for path in parse_paths(paths):
        add(import_job_types(path), path)
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry point {ep.name!r} ({ep.value})"
            try:
                loaded = ep.load()
            except JobTypeError:
                raise
            except Exception as exc:
                raise JobTypeError(ep.name, f"cannot load {source}: {type(exc).__name__}: {exc}") from exc
            add(_collect(loaded, source), source)
    return {name: jt for name, (jt, _) in found.items()}


def import_job_types(path: str) -> list[JobType]:
    """The job types at `path` (`package.module` or `package.module:attribute`)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except JobTypeError:
        raise  # a bad definition inside the module: it names its type
    except Exception as exc:
        raise JobTypeError(path, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    if not attr:
        return _collect(module, path)
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise JobTypeError(path, f"module {module_name!r} has no attribute {attr!r}") from None
    return _collect(target, path)


def _collect(obj: object, source: str) -> list[JobType]:
    if isinstance(obj, JobType):
        return [obj]
    if isinstance(obj, ModuleType):
        types = _from_module(obj)
        if not types:
            raise JobTypeError(source, "the module defines no JobType (use @job_type or llm_job)")
        return types
    if isinstance(obj, list | tuple) and obj and all(isinstance(item, JobType) for item in obj):
        return list(obj)
    raise JobTypeError(source, f"not a JobType, a module of them or a list of them: {obj!r}")


def _from_module(module: ModuleType) -> list[JobType]:
    # Every JobType bound at the top of the module, in definition order; one imported from
    # elsewhere is the same object and is registered once.
    return [value for value in vars(module).values() if isinstance(value, JobType)]


def configure(paths: str | Sequence[str] = (), *, use_entry_points: bool = True) -> dict[str, JobType]:
    """Load this process's job types (entry points call this once at start)."""
    global _current
    _current = load_job_types(paths, use_entry_points=use_entry_points)
    return dict(_current)


def current() -> dict[str, JobType]:
    """This process's job types; loaded from the environment on first use when no entry point
    configured them (code that creates jobs from a library, a Django view, a script)."""
    if _current is None:
        configure(os.environ.get(ENV_VAR, ""))
    assert _current is not None
    return _current


@contextmanager
def registered(*types: JobType) -> Iterator[dict[str, JobType]]:
    """The built-ins plus `types` as this process's job types, for the duration of a test."""
    global _current
    previous = _current
    try:
        reg = load_job_types(use_entry_points=False)
        for jt in types:
            if reg.get(jt.name, jt) is not jt:
                raise JobTypeError(jt.name, "defined twice")
            reg[jt.name] = jt
        _current = reg
        yield dict(reg)
    finally:
        _current = previous
