"""DXLink's wire rules, pure: COMPACT frames (as DXLink sends them, eventType first when asked
for, NaN as a string) into desk records, chunked subscriptions, and the field lists kept in step
with the tastytrade SDK's event models."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest
from tastytrade.dxfeed import Candle, Summary, Trade
from tastytrade.dxfeed import Greeks as SdkGreeks
from tastytrade.dxfeed import Quote as SdkQuote

from kit.adapters.tastytrade import dxlink
from kit.core.model import Contract, Greeks, ModelError, Quote, Right, UnderlyingTick

CALL = Contract("SPXW", date(2024, 3, 12), 5000.0, Right.CALL)
PUT = Contract("SPXW", date(2024, 3, 12), 4950.5, Right.PUT)
NOW = 1_710_252_000_000_000_000

# recorded shapes: a Quote channel configured with eventType first, two events in one frame
QUOTE_FIELDS = {"Quote": ("eventType", "eventSymbol", "bidPrice", "askPrice", "bidSize",
                          "askSize", "bidTime", "askTime")}  # fmt: skip
QUOTE_FRAME = ('{"type":"FEED_DATA","channel":7,"data":["Quote",["Quote",".SPXW240312C5000",'
               '12.3,12.6,10,20,1710252000123,1710252000456,"Quote","SPX",5001.2,5001.8,"NaN",'
               '"NaN",0,0]]}')  # fmt: skip
GREEKS_FRAME = (
    '{"type":"FEED_DATA","channel":3,"data":["Greeks",[".SPXW240312P4950.5",'
    "1710252000000,3.1,0.151,-0.3012,0.0042,-1.85,-0.08,2.7,"
    '".SPXW240312C5000",1710252000000,12.4,"NaN",0.51,0.004,-2.1,0.1,3.0]]}'
)


def test_compact_rows_split_each_type_by_its_configured_fields() -> None:
    rows = dxlink.compact_rows(dxlink.decode(QUOTE_FRAME)["data"], QUOTE_FIELDS)
    assert [r["eventSymbol"] for _, r in rows] == [".SPXW240312C5000", "SPX"]
    assert rows[0][1]["askTime"] == 1710252000456 and rows[1][1]["bidSize"] == "NaN"
    two = ["Quote", ["Quote", "A", 1, 2, 3, 4, 0, 0], "Quote", ["Quote", "B", 1, 2, 3, 4, 0, 0]]
    assert len(dxlink.compact_rows(two, QUOTE_FIELDS)) == 2


@pytest.mark.parametrize(
    "data",
    [["Quote", ["Quote", "A", 1]], ["Quote"], "Quote", ["Trade", ["x"]], {"Quote": []}],
)
def test_a_frame_that_does_not_fit_its_fields_is_an_error(data: object) -> None:
    with pytest.raises(dxlink.DXLinkError):
        dxlink.compact_rows(data, QUOTE_FIELDS)


def test_decode_refuses_non_messages() -> None:
    for bad in ("not json", "[1, 2]", '{"channel": 0}'):
        with pytest.raises(dxlink.DXLinkError):
            dxlink.decode(bad)


def test_quotes_of_options_and_indexes() -> None:
    rows = dxlink.compact_rows(dxlink.decode(QUOTE_FRAME)["data"], QUOTE_FIELDS)
    q = dxlink.event_of(*rows[0], NOW)
    assert q == Quote(CALL, 12.3, 12.6, 10.0, 20.0, 1710252000456 * 1_000_000)
    tick = dxlink.event_of(*rows[1], NOW)
    assert tick == UnderlyingTick("SPX", 5001.5, NOW)  # bid/ask times 0: the feed's clock


def test_vendor_greeks_in_the_desks_units_and_a_nan_row_refused() -> None:
    rows = dxlink.compact_rows(dxlink.decode(GREEKS_FRAME)["data"], dxlink.FEED_FIELDS)
    g = dxlink.event_of(*rows[0], NOW)
    assert isinstance(g, Greeks) and g.contract == PUT and g.source == "tastytrade"
    assert (g.iv, g.delta, g.gamma, g.theta_per_day, g.rho, g.vega_per_point) == (
        0.151, -0.3012, 0.0042, -1.85, -0.08, 2.7)  # fmt: skip
    assert g.ts_ns == 1710252000000 * 1_000_000
    assert math.isnan(g.vanna_per_point) and math.isnan(g.charm_per_day)  # not published
    with pytest.raises(ModelError, match="volatility"):
        dxlink.event_of(*rows[1], NOW)  # "NaN" volatility


def test_summary_trade_and_unknown_rows() -> None:
    oi = dxlink.event_of("Summary", {"eventSymbol": ".SPXW240312C5000", "openInterest": 1234}, NOW)
    assert oi == (CALL, 1234.0)
    t = dxlink.event_of("Trade", {"eventSymbol": "SPX", "price": 5000.25, "time": 0}, NOW)
    assert t == UnderlyingTick("SPX", 5000.25, NOW)  # no time: the feed's clock
    assert dxlink.event_of("Profile", {"eventSymbol": "SPX"}, NOW) is None
    with pytest.raises(ModelError):
        dxlink.event_of("Quote", {"eventSymbol": ".SPXW240312C5000", "bidPrice": "NaN",
                                  "askPrice": 1.0}, NOW)  # fmt: skip


def test_subscriptions_are_chunked_under_the_limit_in_order() -> None:
    symbols = [f".SPXW240312C{4000 + 5 * i}" for i in range(600)]
    msgs = dxlink.subscriptions("Greeks", symbols, max_bytes=3_000)
    assert len(msgs) > 5 and all(len(m) <= 3_000 for m in msgs)
    docs = [json.loads(m) for m in msgs]
    assert [a["symbol"] for d in docs for a in d["add"]] == symbols
    assert {d["channel"] for d in docs} == {dxlink.CHANNELS["Greeks"]}
    rm = json.loads(dxlink.subscriptions("Quote", ["SPX"], add=False)[0])
    assert rm["remove"] == [{"symbol": "SPX", "type": "Quote"}]
    with pytest.raises(dxlink.DXLinkError, match="alone"):
        dxlink.subscriptions("Quote", ["X" * 500], max_bytes=200)


def test_symbols_per_event_type() -> None:
    assert dxlink.symbols_for([PUT, "SPX"]) == {
        "Quote": [".SPXW240312P4950.5", "SPX"], "Greeks": [".SPXW240312P4950.5"],
        "Summary": [".SPXW240312P4950.5"], "Trade": ["SPX"]}  # fmt: skip


def test_field_lists_match_the_sdks_event_models() -> None:
    for cls in (SdkQuote, Trade, SdkGreeks, Summary, Candle):
        assert dxlink.SDK_FIELDS[cls.__name__] == tuple(cls.model_json_schema()["properties"])
    for kind, fields in dxlink.FEED_FIELDS.items():
        assert set(fields) <= set(dxlink.SDK_FIELDS[kind])
