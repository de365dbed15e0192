"""Reading how long a 429 asks us to wait."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from aijobs.providers.retry_after import (
    MAX_WAIT_SECONDS,
    parse_duration,
    parse_retry_after,
    retry_after_seconds,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("250us", 0.00025),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("1s junk", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0  # past: go now
    assert parse_retry_after("tomorrow", now=now) is None


def test_the_most_specific_header_wins() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After": "9", "x-ratelimit-reset-requests": "1s"}) == 9.0
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    both = {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}
    assert retry_after_seconds(both) == 360.0
    assert retry_after_seconds({"x-ratelimit-reset-tokens": "20ms"}) == pytest.approx(0.02)
    assert retry_after_seconds({"content-type": "application/json"}) is None


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-5", "-0.5"])
def test_waits_that_are_not_finite_non_negative_numbers_count_as_absent(value: str) -> None:
    assert parse_retry_after(value) is None
    assert parse_duration(value) is None
    assert retry_after_seconds({"retry-after-ms": value}) is None
    assert retry_after_seconds({"retry-after": value}) is None
    # ...so the next header (or the caller's default) decides.
    assert retry_after_seconds({"retry-after-ms": value, "retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": value, "x-ratelimit-reset-requests": "3s"}) == 3.0


def test_enormous_waits_are_cut_to_a_day() -> None:
    now = 1_700_000_000.0
    assert MAX_WAIT_SECONDS == 86400.0
    assert retry_after_seconds({"retry-after": "10000000000000"}) == MAX_WAIT_SECONDS
    assert retry_after_seconds({"retry-after-ms": "1e300"}) == MAX_WAIT_SECONDS
    assert retry_after_seconds({"x-ratelimit-reset-tokens": "99999999h"}) == MAX_WAIT_SECONDS
    assert parse_duration("9" * 400 + "h") is None  # overflows to infinity: not a number of seconds
    far = formatdate(now + 50 * 365 * 86400, usegmt=True)
    assert parse_retry_after(far, now=now) == MAX_WAIT_SECONDS
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now) == MAX_WAIT_SECONDS
    assert retry_after_seconds({"retry-after": "3600"}) == 3600.0  # a long but sane wait is kept
