"""What the dashboard's "find a job" box accepts: a whole job id, or part of one as people copy
it from the page or a log line.

The page shows ids as `0193…a1b2c3d4` (the first 4 and the last 8 hex digits; see
aijobs.monitoring.view.short_id), so that form is accepted as it is shown, and so are its two
halves, or any 8 or more hex digits from the start or the end of an id. Ids are UUIDv7,
time-ordered: a start is a range of the primary key; an end alone is searched among the newest
jobs only (db/queries/jobs.sql, job_find_by_id_part), so a search stays bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

#: The fewest hex digits a part may have: fewer match too many jobs to be worth listing.
MIN_DIGITS = 8
HEX_DIGITS = 32
#: Longer than any id with spaces around it: the answer names the reason, not the text.
MAX_LENGTH = 80
ELLIPSIS = "…"
_ALLOWED = re.compile(r"[0-9a-f\-…]")
EXAMPLE = "a whole id, or 8+ hex digits of its start or end, e.g. 0193…a1b2c3d4 or a1b2c3d4"


class IdSearchError(ValueError):
    """The reason the text is not an id or part of one (shown to the admin as it is)."""


@dataclass(frozen=True)
class IdPart:
    """Ids that start with `prefix` and end with `suffix` (hex digits, either may be empty)."""

    prefix: str = ""
    suffix: str = ""

    def bounds(self) -> tuple[UUID, UUID]:
        """The primary-key range of the ids that start with the prefix."""
        return (
            UUID(self.prefix.ljust(HEX_DIGITS, "0")),
            UUID(self.prefix.ljust(HEX_DIGITS, "f")),
        )


@dataclass(frozen=True)
class IdSearch:
    """Either one whole id, or the parts to search for (any of them may match)."""

    exact: UUID | None = None
    parts: tuple[IdPart, ...] = ()


def parse(text: str) -> IdSearch:
    """Read what was typed into the find box; IdSearchError says why it is not usable."""
    text = text.strip().lower().replace("...", ELLIPSIS)
    if not text:
        raise IdSearchError(f"id: empty; give {EXAMPLE}")
    if len(text) > MAX_LENGTH:
        raise IdSearchError(f"id: {len(text)} characters is too long for a job id (36 characters)")
    bad = next((c for c in text if not _ALLOWED.fullmatch(c)), None)
    if bad is not None:
        shown = repr(bad) if bad.isprintable() and not bad.isspace() else f"U+{ord(bad):04X}"
        if bad == " ":
            shown = "a space"
        raise IdSearchError(f"id: {shown} cannot be in a job id; only hex digits, dashes and … can")
    if text.count(ELLIPSIS) > 1:
        raise IdSearchError(f"id: more than one …; give {EXAMPLE}")
    start, _, end = text.partition(ELLIPSIS)
    start, end = start.replace("-", ""), end.replace("-", "")
    if len(start) + len(end) > HEX_DIGITS:
        raise IdSearchError(f"id: {len(start) + len(end)} hex digits; a job id has {HEX_DIGITS}")
    if ELLIPSIS in text:
        if max(len(start), len(end)) < MIN_DIGITS:
            raise IdSearchError(f"id: too few hex digits around the …; give {EXAMPLE}")
        return IdSearch(parts=(IdPart(prefix=start, suffix=end),))
    if len(start) == HEX_DIGITS:
        return IdSearch(exact=UUID(start))
    if len(start) < MIN_DIGITS:
        raise IdSearchError(f"id: {len(start)} hex digits are too few; give {EXAMPLE}")
    return IdSearch(parts=(IdPart(prefix=start), IdPart(suffix=start)))
