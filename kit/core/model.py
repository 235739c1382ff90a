"""Immutable domain records shared by every engine, adapter and widget.

Records are frozen msgspec Structs: construction is a fraction of a microsecond (they are built per
tick), they hash (contracts are dict keys in the market state) and they encode to JSON/msgpack for
the service gateway and the store without hand-written serialisers.

Every record validates itself at construction: a NaN, negative or crossed price, a zero size or an
unknown option right raises :class:`ModelError` naming the field and the value, so bad vendor data
is rejected at the edge instead of poisoning marks and P&L downstream.

Timestamps are integer nanoseconds since the Unix epoch (UTC), named ``ts_ns``. Quantities are
signed where a sign means something (a leg's ``ratio``: negative is short) and positive otherwise.
"""

from __future__ import annotations

import math
from datetime import date
from enum import Enum, StrEnum
from typing import Any

import msgspec
from msgspec.structs import force_setattr


class ModelError(ValueError):
    """A record was built from invalid values; the message names the field and the value."""


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


class Severity(StrEnum):
    CRITICAL = "CRITICAL"
    WARNING = "WARNING"
    INFO = "INFO"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class StrategyType(StrEnum):
    STRANGLE = "STRANGLE"
    IRON_CONDOR = "IRON_CONDOR"
    VERTICAL = "VERTICAL"
    RATIO_CALENDAR = "RATIO_CALENDAR"
    HEDGE = "HEDGE"
    CUSTOM = "CUSTOM"


class ActionKind(StrEnum):
    CLOSE_ALL = "close_all"
    CLOSE_HALF = "close_half"
    REDUCE_25 = "reduce_25"
    ROLL_PUT = "roll_put"
    ROLL_CALL = "roll_call"
    ADD_PROTECTION = "add_protection"
    FREEZE = "freeze"
    BLOCK_ENTRIES = "block_entries"


# Option roots whose underlying differs from the root (weeklies / PM-settled classes).
ROOT_UNDERLYING: dict[str, str] = {"SPXW": "SPX", "NDXP": "NDX", "RUTW": "RUT", "VIXW": "VIX"}
# Roots whose contracts settle on the opening print (AM settlement); the rest settle at the close.
AM_SETTLED_ROOTS: frozenset[str] = frozenset({"SPX", "NDX", "RUT", "VIX"})
# Delta Exchange option contract sizes, in units of the coin per contract.
CRYPTO_CONTRACT_SIZE: dict[str, float] = {"BTC": 0.001, "ETH": 0.01}


_INF = math.inf
_NUMBER = (float, int)


def _coerce_enum(record: msgspec.Struct, name: str, enum: type[Enum]) -> None:
    """Accept an enum member or its value (``"C"``); anything else is an unknown value."""
    value = getattr(record, name)
    if isinstance(value, enum):
        return
    try:
        force_setattr(record, name, enum(value))
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ModelError(f"{name}: unknown value {value!r} (expected one of {allowed})") from None


def _check_price(name: str, value: float, *, positive: bool = False) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ModelError(f"{name}: must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ModelError(f"{name}: must be {kind}, got {value!r}")


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ModelError(f"{name}: expected a non-empty string, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelError(f"{name}: expected a positive integer, got {value!r}")


def _check_ts(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelError(f"ts_ns: must be a non-negative integer of nanoseconds, got {value!r}")


class Contract(msgspec.Struct, frozen=True):
    """One listed option. ``root`` is the option root / trading class (``SPXW``, ``SPX``, ``SPY``,
    ``BTC``); the strike is in the quote currency, at most 3 decimals (OCC resolution)."""

    root: str
    expiry: date
    strike: float
    right: Right
    multiplier: float = 0.0  # 0 → the venue's standard size (100 for US options)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.root, str)
            or not (1 <= len(self.root) <= 6)
            or not (self.root.isascii() and self.root.isalnum() and self.root.isupper())
        ):
            raise ModelError(f"root: expected 1-6 upper-case letters/digits, got {self.root!r}")
        if not isinstance(self.expiry, date):
            raise ModelError(f"expiry: expected a date, got {self.expiry!r}")
        _check_price("strike", self.strike, positive=True)
        milli = round(self.strike * 1000)
        if abs(self.strike * 1000 - milli) > 1e-6 * max(1.0, self.strike):
            raise ModelError(f"strike: more than 3 decimals in {self.strike!r}")
        force_setattr(self, "strike", milli / 1000)
        _coerce_enum(self, "right", Right)
        if self.multiplier == 0.0:
            force_setattr(self, "multiplier", CRYPTO_CONTRACT_SIZE.get(self.root, 100.0))
        _check_price("multiplier", self.multiplier, positive=True)

    @property
    def underlying(self) -> str:
        return ROOT_UNDERLYING.get(self.root, self.root)

    @property
    def is_call(self) -> bool:
        return self.right is Right.CALL

    @property
    def is_crypto(self) -> bool:
        return self.root in CRYPTO_CONTRACT_SIZE

    @property
    def am_settled(self) -> bool:
        return self.root in AM_SETTLED_ROOTS

    @property
    def strike_milli(self) -> int:
        """Strike in thousandths: the integer OCC and ThetaData (1/10 cent) both use."""
        return round(self.strike * 1000)


class Quote(msgspec.Struct, frozen=True):
    """Top of book for one contract. A zero price on one side means no bid (or no offer)."""

    contract: Contract
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    ts_ns: int

    def __post_init__(self) -> None:
        b, a, bs, as_, ts = self.bid, self.ask, self.bid_size, self.ask_size, self.ts_ns
        # Fast path for the per-tick case: chained comparisons are False for NaN, inf and
        # negatives, so one expression accepts a good quote; anything else gets the detailed
        # checks below, which name the field.
        if (
            type(b) is float and type(a) is float and type(ts) is int
            and 0.0 <= b < _INF and 0.0 <= a < _INF and 0 <= bs < _INF and 0 <= as_ < _INF
            and (bs > 0 or as_ > 0) and (b <= a or b == 0.0 or a == 0.0) and ts >= 0
            and type(bs) in _NUMBER and type(as_) in _NUMBER
        ):  # fmt: skip
            return
        _check_price("bid", self.bid)
        _check_price("ask", self.ask)
        _check_price("bid_size", self.bid_size, positive=False)
        _check_price("ask_size", self.ask_size, positive=False)
        if self.bid_size == 0 and self.ask_size == 0:
            raise ModelError("bid_size/ask_size: zero-size quote (both sides empty)")
        if self.bid > 0 and self.ask > 0 and self.bid > self.ask:
            raise ModelError(f"bid/ask: crossed quote, bid {self.bid!r} > ask {self.ask!r}")
        _check_ts(self.ts_ns)

    @property
    def mid(self) -> float:
        """Mid price, or NaN when one side is missing (a one-sided market has no fair mid)."""
        return (self.bid + self.ask) / 2 if self.bid > 0 and self.ask > 0 else math.nan

    @property
    def spread_pct(self) -> float:
        """Bid/ask spread as a fraction of mid (NaN for a one-sided quote)."""
        mid = self.mid
        return (self.ask - self.bid) / mid if mid > 0 else math.nan


class Trade(msgspec.Struct, frozen=True):
    """A print on the tape for one contract."""

    contract: Contract
    price: float
    size: float
    ts_ns: int

    def __post_init__(self) -> None:
        _check_price("price", self.price, positive=True)
        _check_price("size", self.size, positive=True)
        _check_ts(self.ts_ns)


class UnderlyingTick(msgspec.Struct, frozen=True):
    """Last price of an underlying or index (SPX, SPY, VIX, BTC)."""

    symbol: str
    price: float
    ts_ns: int

    def __post_init__(self) -> None:
        _check_text("symbol", self.symbol)
        _check_price("price", self.price, positive=True)
        _check_ts(self.ts_ns)


class Greeks(msgspec.Struct, frozen=True):
    """Implied vol and Greeks of one contract, per 1 unit of the option (not per contract).

    Units are in the names: theta and charm per calendar day, vega and vanna per vol point
    (0.01 of sigma), rho per 1.00 of rate. ``source`` says who computed them ("desk" or a vendor).
    """

    contract: Contract
    ts_ns: int
    iv: float
    delta: float
    gamma: float
    theta_per_day: float
    vega_per_point: float
    rho: float
    vanna_per_point: float
    charm_per_day: float
    source: str = "desk"


class Leg(msgspec.Struct, frozen=True):
    """One leg of a strategy: ``ratio`` contracts per strategy unit, negative when short."""

    contract: Contract
    ratio: int

    def __post_init__(self) -> None:
        if not isinstance(self.contract, Contract):
            raise ModelError(f"contract: expected a Contract, got {self.contract!r}")
        if not isinstance(self.ratio, int) or isinstance(self.ratio, bool) or self.ratio == 0:
            raise ModelError(f"ratio: expected a non-zero integer, got {self.ratio!r}")


NAMED_SHAPES = (StrategyType.STRANGLE, StrategyType.IRON_CONDOR, StrategyType.VERTICAL)


def shape_of(legs: tuple[Leg, ...], hint: StrategyType = StrategyType.CUSTOM) -> StrategyType:
    """The strategy ``legs`` form: ``hint`` when they fit it, else the first named shape they
    fit, else CUSTOM. Why: after an adjustment that did not fill (a superseded Add Protection),
    a strangle is still a strangle, not a CUSTOM record with empty wings."""
    for strategy in (hint, *NAMED_SHAPES):
        if strategy is not StrategyType.CUSTOM and _validate_shape(strategy, legs) is None:
            return strategy
    return StrategyType.CUSTOM


def _validate_shape(strategy: StrategyType, legs: tuple[Leg, ...]) -> str | None:
    """Why ``legs`` do not form ``strategy``, or None when they do."""
    rights = [leg.contract.right for leg in legs]
    expiries = {leg.contract.expiry for leg in legs}
    if strategy is StrategyType.STRANGLE:
        if len(legs) != 2 or sorted(rights) != [Right.CALL, Right.PUT]:
            return "a strangle is one call and one put"
        if len(expiries) != 1 or (legs[0].ratio > 0) != (legs[1].ratio > 0):
            return "a strangle's legs share the expiry and the direction"
        put, call = sorted(legs, key=lambda leg: leg.contract.right is Right.CALL)
        if put.contract.strike > call.contract.strike:
            return "a strangle's put strike must not be above its call strike"
    elif strategy is StrategyType.IRON_CONDOR:
        if len(legs) != 4 or len(expiries) != 1:
            return "an iron condor is four legs of one expiry"
        by_strike = sorted(legs, key=lambda leg: leg.contract.strike)
        expected = [(Right.PUT, 1), (Right.PUT, -1), (Right.CALL, -1), (Right.CALL, 1)]
        got = [(leg.contract.right, 1 if leg.ratio > 0 else -1) for leg in by_strike]
        if got not in (expected, [(r, -s) for r, s in expected]):
            return "an iron condor is long put < short put < short call < long call (or inverse)"
    elif strategy is StrategyType.VERTICAL:
        if len(legs) != 2 or len(set(rights)) != 1 or len(expiries) != 1:
            return "a vertical is two legs of one right and one expiry"
        if legs[0].ratio != -legs[1].ratio or legs[0].contract.strike == legs[1].contract.strike:
            return "a vertical is long one strike and short another in equal size"
    elif strategy is StrategyType.RATIO_CALENDAR and (len(legs) < 2 or len(expiries) < 2):
        return "a ratio calendar needs legs in at least two expiries"
    return None


class Position(msgspec.Struct, frozen=True):
    """A strategy as traded: its legs and how many units of it. Fills and P&L live in the book."""

    id: str
    strategy: StrategyType
    legs: tuple[Leg, ...]
    quantity: int
    opened_ts_ns: int
    note: str = ""

    def __post_init__(self) -> None:
        _check_text("id", self.id)
        _coerce_enum(self, "strategy", StrategyType)
        force_setattr(self, "legs", tuple(self.legs))
        if not self.legs:
            raise ModelError("legs: a position needs at least one leg")
        _check_count("quantity", self.quantity)
        _check_ts(self.opened_ts_ns)
        if (why := _validate_shape(self.strategy, self.legs)) is not None:
            raise ModelError(f"legs: {why}")

    @property
    def underlying(self) -> str:
        return self.legs[0].contract.underlying


class Order(msgspec.Struct, frozen=True):
    """An order for ``quantity`` units of the legs (one leg, or a combo).

    ``limit_price`` is the net price per unit: positive pays a debit, negative receives a credit
    (the IBKR combo convention). ``client_id`` is the idempotency key the order manager reuses on
    retries so a resend can never become a second order.
    """

    client_id: str
    legs: tuple[Leg, ...]
    side: Side
    quantity: int
    order_type: OrderType
    ts_ns: int
    limit_price: float | None = None
    position_id: str | None = None

    def __post_init__(self) -> None:
        _check_text("client_id", self.client_id)
        force_setattr(self, "legs", tuple(self.legs))
        if not self.legs:
            raise ModelError("legs: an order needs at least one leg")
        _coerce_enum(self, "side", Side)
        _coerce_enum(self, "order_type", OrderType)
        _check_count("quantity", self.quantity)
        if self.order_type is OrderType.LIMIT:
            lp = self.limit_price
            if not isinstance(lp, int | float) or isinstance(lp, bool) or not math.isfinite(lp):
                raise ModelError(f"limit_price: a limit order needs a finite price, got {lp!r}")
        elif self.limit_price is not None:
            raise ModelError(f"limit_price: a market order has no limit, got {self.limit_price!r}")
        _check_ts(self.ts_ns)


class Fill(msgspec.Struct, frozen=True):
    """One execution of one contract. ``commission`` is in dollars, for the whole fill."""

    fill_id: str
    client_id: str
    contract: Contract
    side: Side
    quantity: float
    price: float
    ts_ns: int
    commission: float = 0.0

    def __post_init__(self) -> None:
        _check_text("fill_id", self.fill_id)
        _coerce_enum(self, "side", Side)
        _check_price("quantity", self.quantity, positive=True)
        _check_price("price", self.price)
        _check_price("commission", self.commission)
        _check_ts(self.ts_ns)

    @property
    def cash_flow(self) -> float:
        """Dollars received (positive) or paid (negative), commission included."""
        return -self.side.sign * self.quantity * self.price * self.contract.multiplier - (
            self.commission
        )


class Alert(msgspec.Struct, frozen=True):
    """A risk alert. ``inputs`` holds the values that triggered it: the audit trail.

    ``key`` tells apart alerts of one rule about one subject (a profit-target level, the
    underlying of a rapid move): the alert manager de-duplicates on (rule, position_id, key).
    """

    ts_ns: int
    severity: Severity
    rule: str
    message: str
    position_id: str | None = None
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        _check_ts(self.ts_ns)
        _coerce_enum(self, "severity", Severity)
        _check_text("rule", self.rule)


class Action(msgspec.Struct, frozen=True):
    """Something a rule proposes (or auto-manage executes) for a position, with its reason.

    ``inputs`` holds the values that triggered it, like an alert's: the audit trail.
    """

    ts_ns: int
    kind: ActionKind
    rule: str
    reason: str
    position_id: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ts(self.ts_ns)
        _coerce_enum(self, "kind", ActionKind)


class Decision(msgspec.Struct, frozen=True):
    """What automation or the order manager decided, and why: an entry taken or skipped, an
    intent accepted or refused, an order step. With alerts and actions, the audit trail.
    """

    ts_ns: int
    kind: str  # entry | intent | rejected | order | done | settlement | recovery
    message: str
    position_id: str | None = None
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ts(self.ts_ns)
        _check_text("kind", self.kind)


class FeedState(StrEnum):
    CONNECTING = "CONNECTING"
    LIVE = "LIVE"
    STALE = "STALE"  # connected but silent longer than the feed's timeout: data can't be trusted
    DISCONNECTED = "DISCONNECTED"
    CLOSED = "CLOSED"


class FeedStatus(msgspec.Struct, frozen=True):
    """A feed's health changed. The desk freezes automation while a feed is not LIVE."""

    feed: str
    state: FeedState
    ts_ns: int
    detail: str = ""

    def __post_init__(self) -> None:
        _coerce_enum(self, "state", FeedState)
        _check_ts(self.ts_ns)


Event = Quote | Trade | UnderlyingTick | FeedStatus
