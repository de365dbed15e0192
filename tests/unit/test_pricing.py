"""The price table: built-in defaults, OPENAI_PRICES overrides, snapshot names, unknown models."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aijobs.config import ConfigError, load_settings
from aijobs.providers.pricing import PriceTable, parse_prices


def test_defaults_and_snapshots() -> None:
    table = PriceTable()
    assert table.lookup("gpt-5-nano") == (Decimal("0.05"), Decimal("0.40"))
    # A dated snapshot uses its own family, never a shorter prefix (gpt-5).
    assert table.lookup("gpt-5-nano-2025-08-07") == (Decimal("0.05"), Decimal("0.40"))
    assert table.lookup("gpt-5-2025-08-07") == (Decimal("1.25"), Decimal("10.00"))
    assert table.lookup("gpt-5-nanox") is None
    assert table.lookup("gpt-5-pro") is None  # a pricier variant is unknown, not "gpt-5"
    assert table.lookup("llama3.1:8b") is None and table.lookup(None) is None


def test_cost() -> None:
    table = PriceTable()
    # 1,000 in at $0.05/M + 500 out at $0.40/M = $0.00005 + $0.0002
    assert table.cost("gpt-5-nano", 1000, 500) == Decimal("0.00025000")
    assert table.cost("unknown-model", 1000, 500) is None
    assert table.cost("gpt-5-nano", None, 500) is None


def test_overrides() -> None:
    table = PriceTable(parse_prices("gpt-5-nano=1:2, llama3.1:8b=0:0"))
    assert table.cost("gpt-5-nano", 1_000_000, 1_000_000) == Decimal("3.00000000")
    assert table.cost("llama3.1:8b", 10, 10) == Decimal("0E-8")
    assert table.lookup("gpt-5-mini") == (Decimal("0.25"), Decimal("2.00"))  # defaults remain
    settings = load_settings(openai_prices="gpt-4o-mini=0.1:0.2", _env_file=None)
    assert settings.price_table() == {"gpt-4o-mini": (Decimal("0.1"), Decimal("0.2"))}


@pytest.mark.parametrize("bad", ["gpt-5", "gpt-5=1", "gpt-5=a:b", "=1:2", "gpt-5=-1:2", "gpt-5=nan:1"])
def test_bad_prices_are_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match=r"model=input:output|non-negative"):
        parse_prices(bad)
    with pytest.raises(ConfigError, match="OPENAI_PRICES"):
        load_settings(openai_prices=bad, _env_file=None)
