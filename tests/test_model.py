import math
from datetime import date

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.core.model import (
    Action,
    ActionKind,
    Alert,
    Contract,
    Fill,
    Leg,
    ModelError,
    Order,
    OrderType,
    Position,
    Quote,
    Right,
    Severity,
    Side,
    StrategyType,
    Trade,
    UnderlyingTick,
)

EXP = date(2024, 1, 19)
CALL = Contract("SPXW", EXP, 4800, Right.CALL)
PUT = Contract("SPXW", EXP, 4600, "P")


def leg(strike: float, right: str, ratio: int, expiry: date = EXP) -> Leg:
    return Leg(Contract("SPXW", expiry, strike, right), ratio)


class TestContract:
    def test_derived_fields(self):
        assert PUT.right is Right.PUT  # the string form is accepted and coerced
        assert CALL.underlying == "SPX" and CALL.multiplier == 100
        assert Contract("SPX", EXP, 4800, "C").am_settled and not CALL.am_settled
        assert Contract("BTC", EXP, 90000, "C").multiplier == 0.001

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"strike": math.nan}, "strike"),
            ({"strike": -5.0}, "strike"),
            ({"strike": 0.0}, "strike"),
            ({"strike": 100.0005}, "strike"),
            ({"right": "X"}, "right"),
            ({"right": "CALLS"}, "right"),
            ({"root": "spxw"}, "root"),
            ({"root": "TOOLONGX"}, "root"),
            ({"root": ""}, "root"),
            ({"expiry": "2024-01-19"}, "expiry"),
            ({"multiplier": -1.0}, "multiplier"),
        ],
    )
    def test_invalid_values_name_the_field(self, kwargs, field):
        args = {"root": "SPXW", "expiry": EXP, "strike": 4800.0, "right": "C"} | kwargs
        with pytest.raises(
            ModelError,
            match=rf"^{field}: .*{kwargs[field]!r}" if field != "expiry" else rf"^{field}:",
        ):
            Contract(**args)

    def test_frozen_and_hashable(self):
        with pytest.raises(AttributeError):
            CALL.strike = 1.0  # type: ignore[misc]
        assert {CALL: 1}[Contract("SPXW", EXP, 4800.0, "C")] == 1

    def test_json_round_trip_validates_on_decode(self):
        q = Quote(CALL, 1.0, 1.2, 10, 5, 123)
        assert msgspec.json.decode(msgspec.json.encode(q), type=Quote) == q
        bad = msgspec.json.encode(q).replace(b'"bid":1.0', b'"bid":-1.0')
        with pytest.raises(msgspec.ValidationError, match="bid"):
            msgspec.json.decode(bad, type=Quote)


class TestQuote:
    @pytest.mark.parametrize(
        ("bid", "ask", "bs", "as_", "match"),
        [
            (math.nan, 1.0, 1, 1, "bid: must be a finite"),
            (1.0, math.inf, 1, 1, "ask: must be a finite"),
            (-0.05, 1.0, 1, 1, "bid: must be non-negative"),
            (1.3, 1.2, 1, 1, "crossed quote"),
            (1.0, 1.2, 0, 0, "zero-size"),
            (1.0, 1.2, -3, 1, "bid_size"),
            (1.0, 1.2, math.nan, 1, "bid_size"),
        ],
    )
    def test_rejects_bad_quotes(self, bid, ask, bs, as_, match):
        with pytest.raises(ModelError, match=match):
            Quote(CALL, bid, ask, bs, as_, 0)

    def test_one_sided_and_locked_quotes_are_valid(self):
        assert math.isnan(Quote(CALL, 0.0, 0.05, 0, 10, 0).mid)
        locked = Quote(CALL, 1.0, 1.0, 1, 1, 0)
        assert locked.mid == 1.0 and locked.spread_pct == 0.0

    @given(st.floats(0.01, 1e4), st.floats(0, 1), st.integers(1, 10**6))
    def test_mid_and_spread(self, bid, widen, size):
        ask = bid * (1 + widen)
        q = Quote(CALL, bid, ask, size, size, 0)
        assert q.bid <= q.mid <= q.ask
        assert q.spread_pct == pytest.approx((ask - bid) / ((ask + bid) / 2))

    def test_timestamp_must_be_integer_ns(self):
        with pytest.raises(ModelError, match="ts_ns"):
            Quote(CALL, 1.0, 1.1, 1, 1, 1.5)  # type: ignore[arg-type]


def test_trade_and_tick_validation():
    with pytest.raises(ModelError, match="size"):
        Trade(CALL, 1.0, 0, 0)
    with pytest.raises(ModelError, match="price"):
        UnderlyingTick("SPX", math.nan, 0)
    with pytest.raises(ModelError, match="symbol"):
        UnderlyingTick("", 4800.0, 0)


class TestPosition:
    def test_valid_shapes(self):
        Position("s1", StrategyType.STRANGLE, (leg(4600, "P", -1), leg(4800, "C", -1)), 1, 0)
        Position(
            "ic",
            "IRON_CONDOR",
            [leg(4500, "P", 1), leg(4600, "P", -1), leg(4800, "C", -1), leg(4900, "C", 1)],
            2,
            0,
        )
        Position("v", StrategyType.VERTICAL, (leg(4600, "P", -1), leg(4550, "P", 1)), 1, 0)
        Position(
            "rc",
            StrategyType.RATIO_CALENDAR,
            (leg(4600, "P", -2), leg(4600, "P", 1, date(2024, 2, 16))),
            1,
            0,
        )
        Position("h", StrategyType.HEDGE, (leg(4000, "P", 3),), 1, 0)

    @pytest.mark.parametrize(
        ("strategy", "legs", "match"),
        [
            (StrategyType.STRANGLE, (leg(4600, "P", -1),), "one call and one put"),
            (StrategyType.STRANGLE, (leg(4600, "P", -1), leg(4800, "C", 1)), "direction"),
            (StrategyType.STRANGLE, (leg(4900, "P", -1), leg(4800, "C", -1)), "put strike"),
            (
                StrategyType.IRON_CONDOR,
                (leg(4500, "P", -1), leg(4600, "P", 1), leg(4800, "C", -1), leg(4900, "C", 1)),
                "long put < short put",
            ),
            (StrategyType.VERTICAL, (leg(4600, "P", -1), leg(4550, "C", 1)), "one right"),
            (StrategyType.RATIO_CALENDAR, (leg(4600, "P", -2), leg(4600, "P", 1)), "two expiries"),
        ],
    )
    def test_wrong_shapes_are_rejected(self, strategy, legs, match):
        with pytest.raises(ModelError, match=match):
            Position("p", strategy, legs, 1, 0)

    def test_quantity_and_strategy(self):
        legs = (leg(4600, "P", -1), leg(4800, "C", -1))
        with pytest.raises(ModelError, match="quantity"):
            Position("p", StrategyType.STRANGLE, legs, 0, 0)
        with pytest.raises(ModelError, match="strategy: unknown value 'BUTTERFLYISH'"):
            Position("p", "BUTTERFLYISH", legs, 1, 0)  # type: ignore[arg-type]
        with pytest.raises(ModelError, match="ratio"):
            Leg(CALL, 0)


class TestOrdersAndFills:
    def test_limit_needs_a_finite_price(self):
        with pytest.raises(ModelError, match="limit_price"):
            Order("c1", (Leg(CALL, -1),), Side.SELL, 1, OrderType.LIMIT, 0, limit_price=math.nan)
        with pytest.raises(ModelError, match="market order has no limit"):
            Order("c1", (Leg(CALL, -1),), Side.SELL, 1, OrderType.MARKET, 0, limit_price=1.0)
        with pytest.raises(ModelError, match="quantity"):
            Order("c1", (Leg(CALL, -1),), "sell", -2, "limit", 0, limit_price=-3.5)
        with pytest.raises(ModelError, match="side: unknown value 'short'"):
            Order("c1", (Leg(CALL, -1),), "short", 1, "limit", 0, limit_price=-3.5)
        o = Order("c1", [Leg(CALL, -1), Leg(PUT, -1)], "sell", 1, "limit", 0, limit_price=-3.5)
        assert o.side is Side.SELL and isinstance(o.legs, tuple)

    def test_fill_cash_flow_sign(self):
        sell = Fill("f1", "c1", CALL, Side.SELL, 2, 1.25, 0, commission=1.3)
        buy = Fill("f2", "c1", CALL, "buy", 2, 0.5, 0, commission=1.3)
        assert sell.cash_flow == pytest.approx(2 * 1.25 * 100 - 1.3)
        assert buy.cash_flow == pytest.approx(-2 * 0.5 * 100 - 1.3)
        with pytest.raises(ModelError, match="commission"):
            Fill("f3", "c1", CALL, "buy", 1, 0.5, 0, commission=-1)


def test_alert_and_action_carry_their_inputs():
    a = Alert(5, "WARNING", "delta", "delta 0.09 > 0.08", "p1", {"delta": 0.09})
    assert a.severity is Severity.WARNING and a.inputs["delta"] == 0.09
    with pytest.raises(ModelError, match="severity"):
        Alert(5, "LOUD", "delta", "x")
    act = Action(5, "roll_call", "delta", "delta 0.11 > 0.10", "p1", {"delta": 0.11})
    assert act.kind is ActionKind.ROLL_CALL
