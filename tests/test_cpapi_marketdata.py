"""The Client Portal's market-data fields as IBKR formats them, read by the pure merge."""

from __future__ import annotations

import math
from datetime import date

import pytest

from kit.adapters.cpapi.marketdata import (
    ConidValues,
    availability,
    field_number,
    greeks_of,
    merge,
    quote_of,
)
from kit.core.model import Contract

CALL = Contract("SPXW", date(2024, 3, 15), 5100.0, "C")


@pytest.mark.parametrize(
    ("text", "value"),
    [("193.18", 193.18), ("C193.18", 193.18), ("H12.5", 12.5), ("1,300", 1300.0),
     ("18.2%", 0.182), ("1.5K", 1500.0), ("2M", 2e6), (7, 7.0), ("-0.4512", -0.4512),
     ("NaN", None), ("inf", None), ("", None), ("n/a", None), (None, None), (True, None)],
)  # fmt: skip
def test_field_numbers(text: object, value: float | None) -> None:
    got = field_number(text)
    assert got == (pytest.approx(value) if value is not None else None)


def test_availability_in_words() -> None:
    assert [availability(t) for t in ("RpB", "DpB", "ZpB", "YP", "N")] == [
        "real-time", "delayed", "frozen", "frozen delayed", "not subscribed"]  # fmt: skip
    assert availability("Q").startswith("unknown")


def test_only_changed_fields_are_merged_and_bad_ones_keep_the_old_value() -> None:
    s = ConidValues()
    first = merge(s, {"conid": 1, "_updated": 1_700_000_000_000, "84": "1.10", "86": "1.20",
                      "88": "10", "85": "1,200", "7308": "0.25", "6509": "RpB",
                      "6119": "q1"}, 0)  # fmt: skip
    assert first.changed == {"84", "86", "88", "85", "7308"} and first.bad == []
    assert s.ts_ns == 1_700_000_000_000 * 1_000_000 and s.availability == "real-time"
    second = merge(s, {"_updated": 1_700_000_000_500, "84": "1.15", "86": "NaN"}, 0)
    assert second.changed == {"84"} and second.bad == ["86='NaN'"]
    q = quote_of(CALL, s)
    assert q is not None and (q.bid, q.ask, q.bid_size, q.ask_size) == (1.15, 1.20, 10, 1200)
    g = greeks_of(CALL, s)
    assert g is not None and g.delta == 0.25 and g.source == "ibkr" and math.isnan(g.gamma)
    assert merge(s, {"84": "1.15"}, 42).changed == set()  # unchanged: nothing to emit
    assert s.ts_ns == 42  # no _updated: stamped with the caller's clock


def test_a_quote_needs_both_sides() -> None:
    s = ConidValues()
    merge(s, {"84": "1.0"}, 1)
    assert quote_of(CALL, s) is None and greeks_of(CALL, s) is None
