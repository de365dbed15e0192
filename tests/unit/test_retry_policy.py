"""Backoff is a pure function: its properties hold for every attempt and random draw."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aijobs.queue.retry import RetryPolicy

policies = st.builds(
    lambda base, factor, jitter: RetryPolicy(base, base * factor, jitter),
    st.floats(0.01, 100),
    st.floats(1, 1000),
    st.floats(0, 1),
)


@given(policies, st.integers(1, 10_000), st.floats(0, 1, exclude_max=True))
def test_delay_is_within_jitter_band_and_never_above_the_cap(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    delay = policy.delay(attempt, draw)
    ceiling = policy.ceiling(attempt)
    assert 0 < delay <= ceiling <= policy.max_seconds
    assert delay >= ceiling * (1 - policy.jitter) - 1e-9


@given(policies, st.integers(1, 200))
def test_ceiling_grows_monotonically_until_the_cap(policy: RetryPolicy, attempt: int) -> None:
    assert policy.ceiling(attempt + 1) >= policy.ceiling(attempt)
    if policy.base_seconds * 2 ** (attempt - 1) < policy.max_seconds:
        assert policy.ceiling(attempt) == pytest.approx(policy.base_seconds * 2 ** (attempt - 1))


def test_first_retries_double() -> None:
    policy = RetryPolicy(base_seconds=2, max_seconds=600, jitter=0)
    assert [policy.next_delay(a) for a in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert policy.next_delay(50) == 600


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0, 1, 0.5), (5, 1, 0.5), (1, 2, 1.5)])
def test_nonsense_policies_are_refused(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base, cap, jitter)
