"""The pieces a provider streams join to exactly what is stored: a plain reply as stripped,
and one string field of a structured answer as the JSON parses it, however the text is cut."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from aijobs.providers.base import JsonFieldDeltas, TrimmedDeltas


def _cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]


@given(st.text(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_trimmed_pieces_join_to_the_stripped_text(text: str, cuts: list[int]) -> None:
    got: list[str] = []
    trim = TrimmedDeltas(got.append)
    for piece in _cut(text, cuts):
        trim(piece)
    assert "".join(got) == text.strip()
    assert all(got), "no empty piece is passed on"


@given(
    st.text(),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=15),
)
def test_a_fields_pieces_join_to_its_parsed_value_however_the_json_is_cut(
    draft: str, ascii_only: bool, cuts: list[int]
) -> None:
    answer = {
        "sentiment": "mixed",
        "topics": ["draft_reply", {"draft_reply": "a nested decoy"}],
        "note": 'a "draft_reply": "decoy" inside a string',
        "draft_reply": draft,
        "urgency": "low",
    }
    text = json.dumps(answer, ensure_ascii=ascii_only)
    got: list[str] = []
    field = JsonFieldDeltas("draft_reply", got.append)
    for piece in _cut(text, cuts):
        field(piece)
    assert "".join(got) == json.loads(text)["draft_reply"]


def test_a_surrogate_pair_split_between_escapes_is_joined() -> None:
    got: list[str] = []
    field = JsonFieldDeltas("draft_reply", got.append)
    for piece in ['{"draft_reply": "smile \\ud83d', "\\ude00", ' done"}']:
        field(piece)
    assert "".join(got) == "smile \U0001f600 done"
