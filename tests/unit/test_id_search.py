"""The find box's reading of an id or part of one: what is accepted, and why the rest is not."""

from __future__ import annotations

from uuid import UUID

import pytest

from aijobs.api.id_search import IdPart, IdSearch, IdSearchError, parse
from aijobs.monitoring.view import short_id

JOB = UUID("0193b0c2-7d4e-7a11-8f00-1234a1b2c3d4")


@pytest.mark.parametrize("text", [str(JOB), f"  {str(JOB).upper()} ", JOB.hex])
def test_a_whole_id_is_looked_up_as_it_is(text: str) -> None:
    assert parse(text) == IdSearch(exact=JOB)


@pytest.mark.parametrize("text", [short_id(JOB), "0193...a1b2c3d4", "  0193…A1B2C3D4 "])
def test_the_shown_form_is_its_start_and_end(text: str) -> None:
    assert parse(text) == IdSearch(parts=(IdPart(prefix="0193", suffix="a1b2c3d4"),))


def test_a_bare_fragment_is_a_start_or_an_end() -> None:
    assert parse("a1b2c3d4") == IdSearch(parts=(IdPart(prefix="a1b2c3d4"), IdPart(suffix="a1b2c3d4")))
    assert parse("…a1b2c3d4") == IdSearch(parts=(IdPart(suffix="a1b2c3d4"),))
    assert parse("0193b0c2-7d4e…") == IdSearch(parts=(IdPart(prefix="0193b0c27d4e"),))


def test_a_start_is_a_range_of_ids() -> None:
    low, high = IdPart(prefix="0193b0c2").bounds()
    assert low == UUID("0193b0c2-0000-0000-0000-000000000000")
    assert high == UUID("0193b0c2-ffff-ffff-ffff-ffffffffffff")
    assert low <= JOB <= high
    assert IdPart(suffix="a1b2c3d4").bounds() == (UUID(int=0), UUID(int=2**128 - 1))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a1b2c3", "6 hex digits are too few"),
        ("0193…c3d4", "too few hex digits around the …"),
        ("0193…a1b2…c3d4", "more than one …"),
        ("'; drop table aijobs.jobs; --", '"\'" cannot be in a job id'),
        ("0193b0c2 a1b2c3d4", "a space cannot be in a job id"),
        ("job 0193b0c2", "'j' cannot be in a job id"),
        ("0193b0c2\x00", "U+0000 cannot be in a job id"),
        ("g193b0c2", "'g' cannot be in a job id"),
        ("a" * 33, "33 hex digits; a job id has 32"),
        ("a" * 81, "too long"),
    ],
)
def test_anything_else_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(IdSearchError) as refused:
        parse(text)
    assert str(refused.value).startswith("id: ") and reason in str(refused.value)
