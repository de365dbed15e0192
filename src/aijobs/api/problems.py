"""RFC 9457 problem details: every refusal the API makes has one shape.

A client (the /api-test page, a Chrome extension, a script) reads `status`, `title` and
`detail`, and for a 422 the `errors` list naming each invalid field and why; a 402 adds
`balance` and `cost`. Domain errors from the core map here in one table, so the same
refusal gets the same answer wherever it is raised.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from aijobs import errors

log = logging.getLogger("aijobs.api")

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(BaseModel):
    """One invalid input: where it is (`body.payload.tone`, `query.limit`, `header.Idempotency-Key`)."""

    field: str
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem document, with aijobs' extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str | None = Field(None, description="A stable machine-readable reason, e.g. insufficient_credits.")
    errors: list[FieldError] | None = Field(None, description="Each invalid field and why (422).")
    balance: int | None = Field(None, description="The account's balance (402).")
    cost: int | None = Field(None, description="What the job would cost (402).")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    detail: str | None,
    *,
    instance: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://aijobs.dev/problems/{code}" if code else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if code is not None:
        body["code"] = code
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, code="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str = "job") -> ProblemError:
    """The same answer for "absent" and "someone else's": existence is not disclosed."""
    return ProblemError(404, f"no such {what}", code="not_found")


def invalid(field: str, reason: str) -> ProblemError:
    return ProblemError(
        422, f"{field}: {reason}", code="invalid_request", errors=[{"field": field, "reason": reason}]
    )


def from_domain(exc: errors.AijobsError) -> ProblemError:
    """The API's answer to a refusal from the core (validation, credits, SQL's typed errors)."""
    if isinstance(exc, errors.InvalidPayload):
        fields = [{"field": f"body.payload.{e['field']}", "reason": e["reason"]} for e in exc.errors]
        return ProblemError(422, exc.message, code=exc.code, errors=fields)
    if isinstance(exc, errors.UnknownJobType):
        return ProblemError(
            422,
            exc.message,
            code=exc.code,
            errors=[{"field": "body.type", "reason": exc.message}],
        )
    if isinstance(exc, errors.JobTypeDisabled):
        return ProblemError(
            409, exc.message, code=exc.code, errors=[{"field": "body.type", "reason": exc.message}]
        )
    if isinstance(exc, errors.InsufficientCredits):
        return ProblemError(
            402,
            f"this job costs {exc.cost} credits and the balance is {exc.balance}",
            code=exc.code,
            balance=exc.balance,
            cost=exc.cost,
        )
    if isinstance(exc, errors.UnknownUser):
        # A signed-in user without a credit account simply has no credits.
        return ProblemError(402, "this user has no credit account yet", code="no_account", balance=0)
    if isinstance(exc, errors.Forbidden):
        return unauthorized(exc.message)
    if isinstance(exc, errors.NotRetryable | errors.IdempotencyKeyReused):
        return ProblemError(409, exc.message, code=exc.code)
    if isinstance(exc, errors.InvalidArgument) and isinstance(exc.details.get("field"), str):
        # A value SQL refused by name: `jobs[2].run_at` is the body's `jobs.2.run_at`.
        field = re.sub(r"^jobs\[(\d+)\]", r"jobs.\1", exc.details["field"])
        reason = exc.details.get("reason") or exc.message
        return ProblemError(
            422, exc.message, code=exc.code, errors=[{"field": f"body.{field}", "reason": reason}]
        )
    return ProblemError(422, exc.message, code=exc.code)


#: What FastAPI says when decoding a body raised something other than a JSON syntax error.
_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
_UNPARSABLE_BODY = "not parsable as JSON (UTF-8, integers under 4300 digits, nesting under ~1000 levels)"


def _field_of(loc: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def install(app: FastAPI) -> None:
    """Make every error, including FastAPI's own, answer as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.status,
            exc.detail,
            instance=request.url.path,
            code=exc.code,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.AijobsError)
        return await on_problem(request, from_domain(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [{"field": _field_of(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5])
        return problem_response(
            422, summary, instance=request.url.path, code="invalid_request", errors=fields
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
            # Bytes json.loads cannot take (invalid UTF-8, an integer over 4300 digits,
            # nesting deeper than the recursion limit) reach FastAPI's catch-all as a bare
            # 400 no route documents; ordinary bad JSON is already a 422. Same refusal, same
            # answer: a 422 naming the body.
            return problem_response(
                422,
                f"body: {_UNPARSABLE_BODY}",
                instance=request.url.path,
                code="invalid_request",
                errors=[{"field": "body", "reason": _UNPARSABLE_BODY}],
            )
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.detail else None,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_data_error(request: Request, exc: Exception) -> JSONResponse:
        # A backstop: a value the validators let through but PostgreSQL cannot store.
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc)
        reason = "holds a value the database cannot store"
        return problem_response(
            422,
            f"body: {reason}",
            instance=request.url.path,
            code="invalid_request",
            errors=[{"field": "body", "reason": reason}],
        )

    async def on_rollback(request: Request, exc: Exception) -> JSONResponse:
        # 40001/40P01: PostgreSQL rolled the request back to break a serialization or lock
        # conflict (a grouped creation whose locks crossed a worker's refunds, say). Nothing
        # of it was written, so the answer is "try again", not a 500.
        log.warning(
            "database rolled back %s %s to resolve a conflict: %s", request.method, request.url.path, exc
        )
        return problem_response(
            503,
            "the database rolled this request back to resolve a conflict with another; nothing was"
            " written or charged, try again",
            instance=request.url.path,
            code="transient_conflict",
            headers={"Retry-After": "1"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error", instance=request.url.path, code="internal")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(errors.AijobsError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(psycopg.errors.DataError, on_data_error)
    for rollback in (
        psycopg.errors.TransactionRollback,  # psycopg's classes for class 40 are siblings
        psycopg.errors.SerializationFailure,
        psycopg.errors.DeadlockDetected,
    ):
        app.add_exception_handler(rollback, on_rollback)
    app.add_exception_handler(Exception, on_unexpected)


def _example(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://aijobs.dev/problems/{code}",
        "title": _TITLES[status],
        "status": status,
        "detail": detail,
        "instance": "/api/jobs",
        "code": code,
        **extra,
    }


#: One typical body per status, shown in /docs and by client generators.
_EXAMPLES: dict[int, dict[str, Any]] = {
    401: _example(401, "unauthorized", "token has expired"),
    402: _example(
        402, "insufficient_credits", "this job costs 2 credits and the balance is 1", balance=1, cost=2
    ),
    403: _example(403, "forbidden", "this endpoint is for administrators"),
    404: _example(404, "not_found", "no such job"),
    409: _example(
        409, "idempotency_key_reused", "this Idempotency-Key was used with a different request; use a new key"
    ),
    413: _example(413, "body_too_large", "request body is larger than 65536 bytes (MAX_BODY_BYTES)"),
    422: _example(
        422,
        "invalid_payload",
        "payload is not valid for ai_generation",
        errors=[{"field": "body.payload.review_text", "reason": "Field required"}],
    ),
    429: _example(
        429,
        "too_many_jobs_in_flight",
        "100 jobs are pending or processing, the most allowed; try again when some finish",
        in_flight=100,
        limit=100,
    ),
    503: _example(
        503,
        "transient_conflict",
        "the database rolled this request back to resolve a conflict with another; nothing was"
        " written or charged, try again",
    ),
}

#: Statuses whose answer carries a Retry-After (seconds) telling when to try again.
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "schema": {"type": "integer"},
    }
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problem statuses a route can answer."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        if status in _EXAMPLES:
            content["example"] = _EXAMPLES[status]
        documented[status] = {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_JSON: content},
        }
        if status in (429, 503):
            documented[status]["headers"] = _RETRY_AFTER
    return documented
