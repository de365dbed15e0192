"""Named queries load and parse; log redaction keeps customer text out."""

from __future__ import annotations

import pytest

from aijobs.db.queries import all_queries, parse
from aijobs.jobs.ai_generation import AIGenerationPayload
from aijobs.logs import redact_payload


def test_every_named_query_loads() -> None:
    queries = all_queries()
    for name in ("job_claim", "job_finish_many", "job_heartbeat", "job_rescue_expired", "job_create"):
        assert name in queries and queries[name].strip()


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse("-- name: a\nselect 1;\n-- name: a\nselect 2;")


def test_redaction_shows_choices_and_numbers_but_not_text() -> None:
    payload = {"review_text": "canary-7f3a secret review", "tone": "friendly", "rating": 4}
    shown = redact_payload(AIGenerationPayload, payload)
    assert shown == {"review_text": "<25 chars>", "tone": "friendly", "rating": 4}
    assert "canary" not in str(redact_payload(None, payload))
