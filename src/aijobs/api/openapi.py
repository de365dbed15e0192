"""The spec `aijobs api` serves at /openapi.json, built without a database or a server.

`aijobs openapi [--out FILE]` writes it; `make client-types` feeds it to the TypeScript
client's generator, and a test compares the committed types with what it generates now.
"""

from __future__ import annotations

import json
from typing import Any


def spec() -> dict[str, Any]:
    """The app's spec; the lifespan never runs, so the database URL is never dialled."""
    from aijobs.api.app import create_app
    from aijobs.config import load_settings

    settings = load_settings(database_url="postgresql://spec-only.invalid/unused", _env_file=None)
    return create_app(settings).openapi()


def dump(value: dict[str, Any]) -> str:
    """Stable text: the committed copy and a fresh one differ only when the spec does."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
