"""first_unstorable finds what PostgreSQL cannot store in any string of an answer, and where."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aijobs.providers.base import UNSTORABLE, first_unstorable

texts = st.text(alphabet=st.sampled_from(["a", "é", "\x00", "\ud800", "\udfff", " "]), max_size=4)
answers = st.recursive(
    st.one_of(texts, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=12,
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _at(value: Any, path: str) -> list[str]:
    """The strings a reported path can name: the value there, or a key of the dict there."""
    for step in path.split(".")[1:]:
        value = value[int(step)] if isinstance(value, list) else value[step]
    return [value] if isinstance(value, str) else list(value) if isinstance(value, dict) else []


@given(answers)
def test_found_exactly_when_some_string_is_unstorable(answer: Any) -> None:
    found = first_unstorable(answer)
    dirty = [s for s in _strings(answer) if UNSTORABLE.search(s)]
    assert (found is None) == (not dirty)
    if found is not None:
        char, where = found
        assert any(char in s for s in _at(answer, where)), (answer, found)


def test_the_path_names_the_key_and_index() -> None:
    assert first_unstorable({"reasons": ["fine", "bad\x00"]}) == ("\x00", "answer.reasons.1")
    assert first_unstorable({"k\ud800": 1}) == ("\ud800", "answer")
    assert first_unstorable({"summary": "clean", "n": 3}) is None
