"""Models and field types that payloads and outputs share (yours may use them too)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)


class Payload(BaseModel):
    """A convenient base for payload models: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Output(BaseModel):
    """Base of every output model.

    `extra="forbid"` gives `additionalProperties: false`, and subclasses declare no defaults, so
    the JSON schema lists every property as required: both are what OpenAI's strict
    structured outputs demand, and the same model then validates the offline provider's answer.
    """

    model_config = ConfigDict(extra="forbid")


SentimentLabel = Literal["positive", "negative", "neutral", "mixed"]
Tone = Literal["friendly", "professional", "apologetic", "enthusiastic", "neutral"]


#: What "blank" means for a form field, in Python and in the published schema alike (a JSON
#: Schema `\\s` and Python's `str.strip()` do not agree on every character).
BLANK_CHARS = " \t\r\n"
BLANK_PATTERN = "^[ \\t\\r\\n]*$"


def blank_to_none(value: object) -> object:
    """Web forms send "" for an untouched optional field; treat that as "not given"."""
    if isinstance(value, str) and not value.strip(BLANK_CHARS):
        return None
    return value


def blank_or(schema: dict[str, object]) -> WithJsonSchema:
    """The JSON schema of an optional field that also takes a blank string as "not given"."""
    return WithJsonSchema(
        {
            "anyOf": [
                schema,
                {"type": "null"},
                {"type": "string", "pattern": BLANK_PATTERN, "description": "blank: not given"},
            ]
        }
    )


def storable(value: object) -> object:
    """Refuse what PostgreSQL cannot store in text: NUL and unpaired surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("may not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains an unpaired UTF-16 surrogate") from None
    return value


#: ISO 639-1 style language code: two letters, stored lower-case ("EN" is accepted as "en").
LanguageCode = Annotated[
    # Surrounding blanks in the pattern too: they are stripped, and the published schema must
    # accept what the model accepts.
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^\s*[A-Za-z]{2}\s*$")
]
#: In a payload: absent or null means the account's default (then "en" / "friendly").
OptionalLanguage = LanguageCode | None
OptionalTone = Tone | None
#: Optional business name: blank means absent, at most 200 characters.
BusinessName = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(blank_to_none)]
#: Optional star rating the customer gave: 1-5 (a JSON integer, not "5"), null, or blank.
Rating = Annotated[
    Annotated[StrictInt, Field(ge=1, le=5)] | None,
    BeforeValidator(blank_to_none),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 5},
                {"type": "null"},
                {"type": "string", "pattern": BLANK_PATTERN, "description": "blank: not given"},
            ]
        }
    ),
]
