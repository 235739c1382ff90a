"""The order ticket through a real desk service: a preview prices an entry and runs its checks
without sending anything; a condor opens from the same command; cancel refuses what is not
working. Buying power is checked against Cboe's margin rules worked out here by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from service_helpers import TOKEN, until

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.remote.client import CommandRefusedError, DeskClient
from kit.remote.gateway import GatewayConfig
from kit.ui.monitor import Monitor
from kit.ui.ticket import WorkingOrders, confirm_text

BAND = {"delta_low": 0.1, "delta_high": 0.3}  # some strike fits whatever the market does


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskClient]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second, not just some
    rules.write_text(  # the ticket's mechanics, not the entry rule's judgement, are tested
        "[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\nmax_abs_delta = 0.4\n"
        "min_open_interest = 1\n"
    )
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, rules=str(rules), demo=False)
    svc = DeskService(cfg)
    await svc.start()
    c = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN, name="ticket")
    c.service = svc  # type: ignore[attr-defined]
    try:
        await until(lambda: (c.snapshot or {}).get("spots"))
        yield c
    finally:
        await c.close()
        await svc.close()


def naked(is_call: bool, strike: float, spot: float, premium: float) -> float:
    """Cboe: premium + 15% of the underlying less the OTM amount, at least premium + 10% of the
    underlying (calls) or the strike (puts); points per contract."""
    otm = max(0.0, strike - spot) if is_call else max(0.0, spot - strike)
    return premium + max(0.15 * spot - otm, 0.10 * (spot if is_call else strike))


async def test_a_preview_prices_the_strangle_and_sends_nothing(client: DeskClient) -> None:
    svc = client.service  # type: ignore[attr-defined]
    before = dict(svc.orders.records)
    p = await client.command("open_strangle", quantity=2, preview=True, **BAND)
    assert p["preview"] is True and p["quantity"] == 2 and len(p["legs"]) == 2
    put, call = sorted(p["legs"], key=lambda g: g["right"])  # "C" < "P": call first
    put, call = call, put
    assert (put["right"], call["right"]) == ("P", "C") and put["strike"] < call["strike"]
    assert all(g["ratio"] == -1 and g["bid"] <= g["mid"] <= g["ask"] for g in p["legs"])
    mids = sum(g["mid"] for g in p["legs"])
    bids = sum(g["bid"] for g in p["legs"])
    assert p["credit_mid"] == pytest.approx(mids * 100 * 2, abs=0.01)
    assert p["credit_natural"] == pytest.approx(bids * 100 * 2, abs=0.01)
    assert p["credit_natural"] <= p["credit_mid"]
    # the greater side's naked requirement plus the other side's premium, x100 x2
    spot = p["spot"]
    need_put = naked(False, put["strike"], spot, put["mid"])
    need_call = naked(True, call["strike"], spot, call["mid"])
    other = call["mid"] if need_put >= need_call else put["mid"]
    assert p["buying_power"] == pytest.approx((max(need_put, need_call) + other) * 200, rel=1e-3)
    assert p["stress_loss"] > 0 and p["stress_loss"] != p["buying_power"]
    assert p["checks"] == {"ok": True, "failures": []}
    assert p["summary"].startswith("sell 2 × SPXW ")
    assert svc.orders.records == before  # nothing was sent
    assert not any(a["rule"] == "entry" for a in client.snapshot["alerts"])  # nor alerted


async def test_a_condor_opens_from_the_ticket(client: DeskClient) -> None:
    p = await client.command("open_strangle", strategy="condor", wing_delta=0.05, preview=True,
                             **BAND)  # fmt: skip
    assert p["strategy"] == "IRON_CONDOR" and len(p["legs"]) == 4
    strikes = sorted(g["strike"] for g in p["legs"])
    widest = max(strikes[1] - strikes[0], strikes[3] - strikes[2])
    assert p["buying_power"] == pytest.approx(widest * 100)  # defined risk: the wider spread
    sent = await client.command("open_strangle", strategy="condor", wing_delta=0.05, **BAND)
    assert sent["summary"].startswith("sent: sell 1 × SPXW") and len(sent["legs"]) == 4

    def held():
        for pos in (client.snapshot or {}).get("positions", []):
            if pos["id"] == sent["position"] and pos["open"] and pos["status"] == "open":
                return pos
        return None

    pos = await until(held)
    assert len(pos["legs"]) == 4


async def test_ticket_mistakes_are_refused_with_the_reason(client: DeskClient) -> None:
    with pytest.raises(CommandRefusedError, match="must be below the shorts' delta band"):
        await client.command("open_strangle", wing_delta=0.2, preview=True, **BAND)
    with pytest.raises(CommandRefusedError, match=r"delta_low 0\.3 is above delta_high 0\.1"):
        await client.command("open_strangle", delta_low=0.3, delta_high=0.1, preview=True)
    with pytest.raises(CommandRefusedError, match="'nope' is not working"):
        await client.command("cancel", intent="nope")


# --- the monitor's widgets (kit.ui.ticket) on the same service ---


async def test_the_monitor_ticket_previews_then_sends_once_and_the_kill_switch_confirms(
    client: DeskClient,
) -> None:
    m = Monitor(client)
    m.start()
    try:
        t = m.ticket
        t.structure.value = "Iron condor"
        t.delta_low.value, t.delta_high.value, t.wing_delta.value = 0.1, 0.3, 0.05
        assert t.send_btn.disabled and t.wing_delta.layout.display == ""
        p = await t.preview()
        assert p is not None and p["strategy"] == "IRON_CONDOR", t.result.value
        assert "entry checks passed" in t.shown.value and "Reg-T" in t.shown.value
        assert not t.send_btn.disabled
        t.quantity.value = 2  # any change after a preview needs a new one
        assert t.send_btn.disabled and t.previewed is None
        await t.preview()
        out = await t.send()
        assert out is not None and out["summary"].startswith("sent: sell 2 × SPXW"), t.result.value
        assert "✓ sent" in t.result.value and t.send_btn.disabled  # one preview, one order
        assert await t.send() is None and "preview first" in t.result.value

        def opened() -> bool:
            return any(pos["id"] == out["position"] and pos["open"]
                       for pos in (client.snapshot or {}).get("positions", []))  # fmt: skip

        await until(opened)
        await until(lambda: not (client.snapshot or {}).get("working"))
        half = await client.command("close_half", position=out["position"])
        assert half["summary"] == (f"closing 1 of 2 units of {out['position']} "
                                   "(limit ladder from mid)")  # fmt: skip
        m.kill.click()
        assert "KILL SWITCH" in m.confirm_text.value and "cancel every working order" in (
            m.confirm_text.value
        )
        m.yes.click()
        await until(lambda: (client.snapshot or {}).get("killed"))
        await until(lambda: m.kill.description == "Reset kill switch")
        p = await t.preview()  # a killed desk refuses entries: the preview says so
        assert p is not None and not p["checks"]["ok"] and t.send_btn.disabled
    finally:
        await m.stop()


def test_confirmations_say_what_will_be_sent() -> None:
    legs = [{"qty": -2.0, "label": "4950 P"}, {"qty": -2.0, "label": "5050 C"}]
    pos = {"id": "demo-1", "quantity": 2.0, "legs": legs}
    text = confirm_text("close_half", pos)
    assert text.startswith("Close 50% of demo-1 (−4950 P / −5050 C): buy back 1 of 2 units")
    assert "limit ladder from mid" in text
    assert "buy back 1 of 2 units" in confirm_text("reduce_25", pos)  # at least one unit
    assert "buy 2 wings" in confirm_text("add_protection", pos)
    assert confirm_text("close_all", None).startswith("Close ALL open positions")
    assert confirm_text("roll_put", None) == "No position selected."


def test_working_orders_list_each_intent_with_a_cancel_button() -> None:
    asked: list[str] = []
    box = WorkingOrders(asked.append)
    rows = [{"intent": "demo-1.close.r1", "kind": "close", "position": "demo-1",
             "status": "working", "filled": 1, "quantity": 2}]  # fmt: skip
    box.update(rows)
    assert "close demo-1: working, 1 of 2 filled" in box.widget.children[1].children[0].value
    box.widget.children[1].children[1].click()
    assert asked == ["demo-1.close.r1"]
    before = box.widget.children
    box.update([dict(r) for r in rows])  # the same orders: nothing rebuilt
    assert box.widget.children is before
    box.update([])
    assert box.widget.children == ()
