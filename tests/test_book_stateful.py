"""Stateful property test: random opens, partial fills, closes, rolls, protection, reductions
and settlements never desynchronise the book's leg arrays, and P&L always equals cash + value.

The bug this guards against: adding two wing legs inserted one element into the per-leg arrays,
so every later valuation failed (and took the desk's tasks with it).
"""

import itertools
from datetime import date, datetime

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kit.core.clock import NEW_YORK, to_ns
from kit.core.model import Contract, Fill, Leg, Position, Quote, Right, Side, StrategyType
from kit.core.model import UnderlyingTick as Tick
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState

EXPIRY = date(2024, 3, 15)
NOW = to_ns(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK))
SPOT = 5100.0
PUTS = [Contract("SPXW", EXPIRY, k, Right.PUT) for k in (4800.0, 4850.0, 4900.0, 4950.0)]
CALLS = [Contract("SPXW", EXPIRY, k, Right.CALL) for k in (5250.0, 5300.0, 5350.0, 5400.0)]
prices = st.floats(0.05, 40.0).map(lambda x: round(x, 2))


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.market = MarketState()
        self.market.on_underlying(Tick("SPX", SPOT, NOW))
        self.book = Book(self.market)
        self.ids = itertools.count()
        self.cash: dict[str, float] = {}  # dollars each position's fills paid or received
        self.opened: list[str] = []
        self.reduced: set[str] = set()  # positions a reduction or settlement has touched

    def _fill(self, pid: str, contract: Contract, side: Side, qty: int, price: float) -> None:
        fee = 0.65 * qty
        f = Fill(f"f{next(self.ids)}", "c", contract, side, qty, price, NOW, commission=fee)
        assert self.book.apply_fill(f, pid)
        self.cash[pid] -= side.sign * qty * price * 100 + fee

    def _held(self) -> list[str]:
        return [p for p in self.opened if self.book.held(p) is not None]

    @rule(put=st.sampled_from(PUTS[1:3]), call=st.sampled_from(CALLS[1:3]),
          qty=st.integers(1, 4), condor=st.booleans(), px=prices)  # fmt: skip
    def open(self, put, call, qty, condor, px):
        pid = f"p{next(self.ids)}"
        legs = [Leg(put, -1), Leg(call, -1)]
        if condor:
            legs = [Leg(PUTS[0], 1), *legs, Leg(CALLS[3], 1)]
        kind = StrategyType.IRON_CONDOR if condor else StrategyType.STRANGLE
        self.book.open(Position(pid, kind, tuple(legs), qty, NOW))
        self.cash[pid] = 0.0
        self.opened.append(pid)
        for leg in legs:  # sometimes only part of the entry fills
            side = Side.SELL if leg.ratio < 0 else Side.BUY
            self._fill(pid, leg.contract, side, qty, px)

    @precondition(lambda self: self._held())
    @rule(data=st.data(), px=prices)
    def reduce(self, data, px):
        """A partial close (close half, reduce 25%, close all): buy back some of every leg."""
        pid = data.draw(st.sampled_from(self._held()))
        held = self.book.held(pid)
        n = data.draw(st.integers(1, held.quantity))
        for leg in held.legs:
            side = Side.BUY if leg.ratio < 0 else Side.SELL
            self._fill(pid, leg.contract, side, n * abs(leg.ratio), px)
        self.reduced.add(pid)
        if self.book.held(pid) is not None:
            self.book.amend(self.book.held(pid))  # the manager reshapes what is left

    @precondition(lambda self: self._held())
    @rule(data=st.data(), px=prices, fill_new=st.booleans())
    def roll(self, data, px, fill_new):
        """Roll a short leg to another strike of the same side (amend, then the two fills)."""
        pid = data.draw(st.sampled_from(self._held()))
        held = self.book.held(pid)
        shorts = [leg for leg in held.legs if leg.ratio < 0]
        if not shorts:
            return
        old = data.draw(st.sampled_from(shorts))
        pool = PUTS if old.contract.right is Right.PUT else CALLS
        taken = {leg.contract for leg in held.legs}
        free = [c for c in pool if c not in taken]
        if not free:
            return
        new = data.draw(st.sampled_from(free))
        legs = (*(leg for leg in held.legs if leg != old), Leg(new, old.ratio))
        self.book.amend(Position(pid, StrategyType.CUSTOM, legs, held.quantity, NOW))
        q = held.quantity * abs(old.ratio)
        self._fill(pid, old.contract, Side.BUY, q, px)
        if fill_new:  # a roll whose new leg never fills leaves a smaller position
            self._fill(pid, new, Side.SELL, q, px)

    @precondition(lambda self: self._held())
    @rule(data=st.data(), px=prices)
    def protect(self, data, px):
        """Buy wings: two legs added at once (the case that used to break the arrays)."""
        pid = data.draw(st.sampled_from(self._held()))
        held = self.book.held(pid)
        taken = {leg.contract for leg in held.legs}
        wings = [c for c in (PUTS[0], CALLS[3]) if c not in taken]
        if not wings:
            return
        legs = held.legs + tuple(Leg(c, 1) for c in wings)
        self.book.amend(Position(pid, StrategyType.CUSTOM, legs, held.quantity, NOW))
        for c in wings:
            self._fill(pid, c, Side.BUY, held.quantity, px)

    @precondition(lambda self: self._held())
    @rule(data=st.data(), spot=st.floats(4700, 5500))
    def settle(self, data, spot):
        """Expiry: every held leg closes at its intrinsic value."""
        pid = data.draw(st.sampled_from(self._held()))
        held = self.book.held(pid)
        self.reduced.add(pid)
        for leg in held.legs:
            k = leg.contract.strike
            value = max(0.0, spot - k) if leg.contract.is_call else max(0.0, k - spot)
            side = Side.BUY if leg.ratio < 0 else Side.SELL
            self._fill(pid, leg.contract, side, held.quantity * abs(leg.ratio), round(value, 2))

    @rule(contract=st.sampled_from(PUTS + CALLS), px=prices)
    def quote(self, contract, px):
        self.market.on_quote(Quote(contract, px, round(px * 1.05 + 0.05, 2), 10, 10, NOW))

    @invariant()
    def arrays_agree(self):
        self.book.check()

    @invariant()
    def pnl_is_cash_plus_value(self):
        b, m = self.book, self.market
        view = b.view(NOW)
        assert len(view) == len(b.ids)
        for i, pid in enumerate(view.ids):
            j = b.legs_of(pid)
            mark = m.mark[b.leg_row[j]]
            mark = np.where(np.isfinite(mark), mark, b.leg_avg[j])
            value = float(np.sum(b.leg_qty[j] * mark * 100))
            assert view.total_pnl[i] == np.float64(self.cash[pid] + value) or abs(
                view.total_pnl[i] - (self.cash[pid] + value)) < 1e-6  # fmt: skip
            # net credit is the cash; the units held are worth their credit plus their value
            assert abs(view.net_credit[i] - self.cash[pid]) < 1e-6
            assert abs(view.held_pnl[i] - (view.credit[i] + value)) < 1e-6
            if pid not in self.reduced:  # rolls and wings only: the held units are the whole
                assert abs(view.credit[i] - view.net_credit[i]) < 1e-6
            if b.held(pid) is not None:  # the risk graph and the snapshot can value it
                b.profile(pid, NOW, points=11)


TestBook = BookMachine.TestCase
TestBook.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
