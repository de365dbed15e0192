"""Estimated cost of a call, from a table of USD prices per million tokens.

An estimate, not an invoice: cached-input discounts and batch pricing are ignored, so the figure
errs high. Reasoning tokens are billed as output and are already inside `output_tokens`.
Prices change; OPENAI_PRICES ("model=input:output,…", USD per 1M tokens) overrides or extends
the built-in table without a release. An unknown model costs `None` (unknown), never 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from aijobs.config import Prices, parse_prices

__all__ = ["DEFAULT_PRICES", "PriceTable", "Prices", "parse_prices"]

#: USD per 1M (input, output) tokens for the standard tier, as published by OpenAI in 2025.
DEFAULT_PRICES: dict[str, Prices] = {
    "gpt-5": (Decimal("1.25"), Decimal("10.00")),
    "gpt-5-mini": (Decimal("0.25"), Decimal("2.00")),
    "gpt-5-nano": (Decimal("0.05"), Decimal("0.40")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "o4-mini": (Decimal("1.10"), Decimal("4.40")),
}

_MILLION = Decimal(1_000_000)
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class PriceTable:
    """Built-in prices overlaid with the configured ones; looks models up by name or snapshot."""

    def __init__(self, overrides: Mapping[str, Prices] | None = None) -> None:
        self.prices: dict[str, Prices] = {**DEFAULT_PRICES, **(overrides or {})}

    def lookup(self, model: str | None) -> Prices | None:
        """Prices for `model`; a dated snapshot ("gpt-5-nano-2025-08-07") uses its family's.

        Only a date suffix is stripped: "gpt-5-pro" is not "gpt-5" (it costs far more), so an
        unlisted variant is unknown rather than mispriced.
        """
        if not model:
            return None
        return self.prices.get(model) or self.prices.get(_SNAPSHOT.sub("", model))

    def cost(self, model: str | None, input_tokens: int | None, output_tokens: int | None) -> Decimal | None:
        """Estimated USD for one call, or None when the model or the token counts are unknown."""
        prices = self.lookup(model)
        if prices is None or input_tokens is None or output_tokens is None:
            return None
        usd = (Decimal(input_tokens) * prices[0] + Decimal(output_tokens) * prices[1]) / _MILLION
        return usd.quantize(Decimal("0.00000001"))
