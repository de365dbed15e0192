"""`OfflineProvider`: answers LLM tasks with local rules, no network and no API key.

It exists so the whole system (queue, worker, API, UI, benchmarks, tests) runs for real without
an OpenAI account, and so a demo never fakes results: sentiment comes from VADER, a lexicon
model that ships its own word list, and replies, triage and prompt critique come from plain,
deterministic rules over the job's validated payload. It writes English only.

Each job type brings its own rule (`LLMTask.offline`, set by the job module), so this module
knows no job type by name; it holds the shared toolkit those rules use (VADER, topics, reply
templates, the prompt checklist). Every answer is still validated with `task.output`, so a drift
between a rule and its output model fails loudly as a `FatalProviderError`.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aijobs.errors import MissingExtra
from aijobs.providers.base import Completion, FatalProviderError, LLMTask, M, Usage

T = TypeVar("T")

NAME = "offline"
MODEL = "rules-v1"

_WORD = re.compile(r"[a-z][a-z'-]*")

TOPIC_KEYWORDS: dict[str, frozenset[str]] = {
    topic: frozenset(words.split())
    for topic, words in {
        "service": "service served serve support helpful unhelpful assistance",
        "staff": "staff employee employees waiter waitress manager cashier rude polite",
        "price": "price prices pricey expensive cheap overpriced cost value affordable",
        "food": "food meal dish dishes taste tasty delicious bland menu pizza burger",
        "delivery": "delivery delivered deliver shipping shipped courier package",
        "cleanliness": "clean dirty filthy hygiene messy spotless smelly sticky",
        "wait time": "wait waited waiting slow late delay delayed queue quick",
        "quality": "quality broken defective faulty durable sturdy flimsy",
        "atmosphere": "atmosphere ambiance ambience music noisy loud cozy decor",
    }.items()
}
TOPIC_PHRASES = {
    "service": "our service",
    "staff": "our team",
    "price": "our prices",
    "food": "our food",
    "delivery": "our delivery",
    "cleanliness": "the cleanliness",
    "wait time": "the wait",
    "quality": "the quality",
    "atmosphere": "the atmosphere",
}
SAFETY_WORDS = frozenset({"sick", "poisoning", "dangerous", "unsafe", "injured", "injury", "hospital"})
LEGAL_WORDS = frozenset({"lawyer", "attorney", "sue", "suing", "lawsuit", "police", "fraud", "scam"})
MONEY_WORDS = frozenset({"refund", "refunded", "chargeback", "money back", "compensation"})
URGENT_WORDS = SAFETY_WORDS | LEGAL_WORDS | MONEY_WORDS

# Prompt-analysis vocabulary: each check looks for any of these (lower-cased) fragments.
_ROLE = re.compile(r"\byou are\b|\bact as\b|\bact like\b|\bas an? (expert|senior|professional)\b|\brole\b")
_FORMAT = re.compile(
    r"\bformat\b|\bjson\b|\bbullet|\btable\b|\bmarkdown\b|\blist\b|\bparagraphs?\b|\bsentences?\b"
    r"|\bwords\b|\brespond with\b|\breturn\b|\boutput\b|\bheadings?\b"
)
_EXAMPLES = re.compile(r"\bexamples?\b|\be\.g\.|\bfor instance\b|\bsuch as\b|```|\binput:|\boutput:")
_CONSTRAINTS = re.compile(
    r"\bmust\b|\bshould\b|\bdon'?t\b|\bdo not\b|\bnever\b|\balways\b|\bat most\b|\bno more than\b"
    r"|\blimit\b|\bonly\b|\bavoid\b|\bmaximum\b|\bminimum\b|\bwithin\b|\bunder \d+"
)
VAGUE_WORDS = (
    "good", "nice", "better", "best", "stuff", "things", "something", "etc", "interesting",
    "appropriate", "various", "somehow", "properly", "some",
)  # fmt: skip
MIN_PROMPT_WORDS = 15


@dataclass(frozen=True)
class SentimentReading:
    """VADER's verdict on one text, plus the words that drove it (for human-readable reasons)."""

    label: str
    score: float
    positive_words: tuple[tuple[str, float], ...]
    negative_words: tuple[tuple[str, float], ...]


@functools.cache
def _vader() -> Any:
    """One analyzer per process: it loads its lexicon once and is read-only after. Imported
    here: VADER is the 'offline' extra, and a deployment on OpenAI goes without it."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise MissingExtra(
            "offline", "the offline provider (LLM_PROVIDER=offline, or no OPENAI_API_KEY)"
        ) from exc
    return SentimentIntensityAnalyzer()


class OfflineProvider:
    """A `Provider` that answers from rules: fast, free, deterministic, and never on the network."""

    name: str = NAME
    model: str | None = MODEL

    def __init__(self) -> None:
        # At construction, so a deployment missing the extra hears it at start, not per job.
        _vader()

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        """Answer `task` with its type's rule; a type without one, or a rule/model mismatch, is
        fatal (no retry helps)."""
        started = time.perf_counter()
        if task.offline is None:
            raise FatalProviderError(
                f"offline provider has no rule for job kind {task.kind!r}: give its job type an "
                "offline rule (llm_job(offline=...)), or set OPENAI_API_KEY to use a model",
                usage=self._usage(started),
            )
        answer = task.offline()
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        raw = {task.text_field: answer} if task.text_field else answer
        try:
            output = task.output.model_validate(raw)
        except ValidationError as exc:
            raise FatalProviderError(
                f"offline answer for {task.kind!r} does not fit {task.output.__name__}: {exc}",
                usage=self._usage(started),
            ) from exc
        extra: dict[str, object] = {}
        language = field_value(task.payload, "language", str)
        if language and language != "en":
            extra["note"] = f"offline rules write English only; requested language {language!r}"
        return Completion(output=output, usage=self._usage(started), extra=extra)

    async def aclose(self) -> None:
        """Nothing to release: no connections, no files."""

    def read_sentiment(self, text: str) -> SentimentReading:
        return read_sentiment(text)

    def _usage(self, started: float) -> Usage:
        return Usage(
            provider=NAME,
            model=MODEL,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            cost_usd=Decimal(0),
        )


def read_sentiment(text: str) -> SentimentReading:
    """Label `text` with VADER: compound ≥ 0.05 positive, ≤ -0.05 negative, else neutral;
    "mixed" when both the positive and the negative share are substantial."""
    vader = _vader()
    scores = vader.polarity_scores(text)
    compound = float(scores["compound"])
    pos, neg = float(scores["pos"]), float(scores["neg"])
    if pos >= 0.15 and neg >= 0.15:
        label = "mixed"
    elif compound >= 0.05:
        label = "positive"
    elif compound <= -0.05:
        label = "negative"
    else:
        label = "neutral"
    valences: dict[str, float] = {}
    for word in _words(text):
        valence = vader.lexicon.get(word)
        if valence is not None:
            valences[word] = float(valence)
    positives = sorted(((w, v) for w, v in valences.items() if v > 0), key=lambda wv: (-wv[1], wv[0]))
    negatives = sorted(((w, v) for w, v in valences.items() if v < 0), key=lambda wv: (wv[1], wv[0]))
    return SentimentReading(label, round(compound, 4), tuple(positives[:3]), tuple(negatives[:3]))


# --- pure rule functions (module level so they are easy to test and reuse) ---------------------------


def find_topics(text: str) -> tuple[str, ...]:
    """Topics whose keywords occur in `text`, in the fixed order of `TOPIC_KEYWORDS`."""
    words = set(_words(text))
    return tuple(topic for topic, keys in TOPIC_KEYWORDS.items() if words & keys)


_TONES: dict[str, tuple[str, str, str, str]] = {
    # tone: (greeting, thanks, apology, closing)
    "friendly": ("Hi there,", "Thank you so much for your review", "We're really sorry", "See you soon!"),
    "professional": ("Dear customer,", "Thank you for your review", "We sincerely apologise", "Regards,"),
    "apologetic": ("Hello,", "Thank you for taking the time to write", "We are truly sorry", "Sincerely,"),
    "enthusiastic": ("Hi there!", "Wow, thank you so much for your review", "We're so sorry", "Cheers!"),
    "neutral": ("Hello,", "Thank you for your review", "We apologise", "Regards,"),
}


def write_reply(
    *, mood: str, tone: str, business: str | None, topics: tuple[str, ...], signature: str | None = None
) -> str:
    """A short public reply: thank for praise, apologise and invite contact for complaints,
    signed with `signature` when given, else the business's name."""
    greeting, thanks, sorry, closing = _TONES.get(tone, _TONES["neutral"])
    about = TOPIC_PHRASES[topics[0]] if topics else "your visit"
    where = f" of {business}" if business else ""
    if mood == "positive":
        body = f"{thanks}{where}! We're delighted you enjoyed {about}; we'll pass your words on to the team."
    elif mood == "negative":
        body = (
            f"{sorry} that {about} fell short of what you expected. This is not the experience we want "
            "for anyone. Please contact us directly so we can look into it and make it right."
        )
    elif mood == "mixed":
        body = (
            f"{thanks}{where}. We're glad parts of your experience went well, and {sorry.lower()} about "
            f"{about}. Please contact us directly so we can put it right."
        )
    else:
        body = f"{thanks}{where}. If there is anything we could do better, please let us know."
    sign = signature or business
    ending = f"{closing}\n{sign}" if sign else closing
    return f"{greeting}\n\n{body}\n\n{ending}"


def suggest_actions(mood: str, urgency: str, topics: tuple[str, ...], flagged: tuple[str, ...]) -> list[str]:
    """Concrete next steps for the team, most pressing first."""
    actions: list[str] = []
    flags = set(flagged)
    if urgency == "high":
        actions.append("Reply within 24 hours and escalate to a manager")
    if flags & SAFETY_WORDS:
        actions.append("Investigate the reported health or safety problem and document it")
    if flags & LEGAL_WORDS:
        actions.append("Forward the review to legal before replying publicly")
    if flags & MONEY_WORDS:
        actions.append("Review the refund or compensation request")
    if mood in ("negative", "mixed"):
        actions += [f"Follow up internally on {topic}" for topic in topics[:3]]
        actions.append("Contact the customer privately to resolve the issue")
    elif mood == "positive":
        actions.append("Share the praise with the team")
        actions.append("Invite the customer to come back")
    actions.append("Publish the draft reply")
    return actions[:8]


def analyse_prompt(prompt: str, goal: str | None) -> dict[str, Any]:
    """Rule-based critique of an LLM prompt, and a rewrite that wraps the original verbatim."""
    lower = prompt.lower()
    word_count = len(prompt.split())
    issues: list[str] = []
    fixes: list[str] = []
    if word_count < MIN_PROMPT_WORDS:
        issues.append(
            f"The prompt is very short ({word_count} words): add context about the task and inputs."
        )
        fixes.append("adds a context section")
    if not _ROLE.search(lower):
        issues.append("No role is given: tell the model who it is (e.g. 'You are an experienced editor').")
        fixes.append("assigns a role")
    if not _FORMAT.search(lower):
        issues.append("The expected output format is not specified (length, structure, JSON, bullets...).")
        fixes.append("specifies the output format")
    if not _EXAMPLES.search(lower):
        issues.append("No examples: one input/output example shows the model what you want.")
        fixes.append("adds an example slot")
    vague = sorted({w for w in _words(lower) if w in VAGUE_WORDS})
    if vague:
        issues.append(
            "Vague words: " + ", ".join(f'"{w}"' for w in vague[:5]) + "; say what you mean concretely."
        )
        fixes.append("asks for concrete criteria")
    if not _CONSTRAINTS.search(lower):
        issues.append("No constraints: state what the model must, must not, or may at most do.")
        fixes.append("adds constraints")
    sections = [
        "You are an expert assistant." + (f" Your goal: {goal}" if goal else ""),
        "Task:\n" + prompt,
    ]
    if word_count < MIN_PROMPT_WORDS:
        sections.append("Context:\n- Audience: <who will read the answer>\n- Inputs: <what you are given>")
    if vague:
        sections.append("Success criteria:\n- <replace vague words with measurable criteria>")
    sections.append("Constraints:\n- Stay factual; do not invent details.\n- <length or scope limits>")
    sections.append("Output format:\n- <e.g. 3 bullet points, or JSON with fields ...>")
    if not _EXAMPLES.search(lower):
        sections.append("Example:\nInput: <a typical input>\nOutput: <the answer you would want>")
    if fixes:
        rationale = (
            f"Found {len(issues)} issue(s). The improved prompt keeps your text verbatim as the task and "
            + ", ".join(fixes)
            + "; fill in the <placeholders> with specifics."
        )
    else:
        rationale = "No common issues found: the prompt states a role, format, examples and constraints."
    return {"issues": issues, "improved_prompt": "\n\n".join(sections), "rationale": rationale}


# --- small helpers ----------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def flagged_words(text: str) -> tuple[str, ...]:
    """Words that make a review urgent whatever its score (health, safety, legal, money)."""
    lower = text.lower()
    words = set(_words(lower))
    return tuple(sorted(w for w in URGENT_WORDS if (w in words if " " not in w else w in lower)))


def blend_rating(label: str, rating: int | None) -> str:
    """Combine VADER's label with the star rating. The stars are the customer's own verdict, so
    they settle a neutral or mixed reading; only text that clearly contradicts them is "mixed"."""
    if rating is None or rating == 3:
        return label
    if rating >= 4:
        return "mixed" if label == "negative" else "positive"
    return "mixed" if label == "positive" else "negative"


def quote_words(pairs: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f'"{word}" ({valence:+.1f})' for word, valence in pairs)


def field_value(payload: BaseModel, name: str, kind: type[T]) -> T | None:
    """`payload.name` when it exists and is a `kind`, else None."""
    value = getattr(payload, name, None)
    return value if isinstance(value, kind) else None
