"""A rule level's partial close is carried out once per position, across restarts too: the
level goes into the journaled intent's source, and a restarted order manager hands it back to
the desk's once-memory (else a 50% profit target would halve the position again at start)."""

from test_order_manager import Env, hold

from kit.core.model import Action
from kit.execution.intents import IntentKind
from kit.execution.state import JsonStateStore

HALF = {"enabled": True, "levels": [{"at": 50.0, "severity": "INFO", "action": "close_half"}]}


def closes(env: Env) -> list:
    return [r for r in env.manager.records.values() if r.intent.kind is IntentKind.CLOSE]


def actions(env: Env) -> list[Action]:
    return [a for a in env.events if isinstance(a, Action)]


async def test_a_partial_close_is_not_repeated_after_a_restart(tmp_path):
    store = JsonStateStore(tmp_path)
    a = Env(store=store, rules={"profit_target": HALF}, auto_manage=True)
    a.strangle_quotes()
    try:
        await hold(a, "S1", "strat", quantity=2)
        a.strangle_quotes(put=(0.70, 0.80), call=(0.70, 0.80))  # 66% of the credit
        await a.run(1)
        (rec,) = closes(a)
        assert rec.intent.source == "auto:profit_target:50" and rec.intent.fraction == 0.5
        await a.finish(rec)
        assert a.desk.book.held("S1").quantity == 1
        a.strangle_quotes(put=(0.70, 0.80), call=(0.70, 0.80))
        await a.run(1)
        assert len(closes(a)) == 1  # the level still holds: once is once
    finally:
        await a.close()

    b = Env(store=store, rules={"profit_target": HALF}, auto_manage=True, clock=a.clock)
    b.strangle_quotes(put=(0.70, 0.80), call=(0.70, 0.80))
    await b.manager.start()
    try:
        assert ("profit_target", "S1", "50") in b.desk.done_once
        b.strangle_quotes(put=(0.70, 0.80), call=(0.70, 0.80))
        await b.run(2)
        assert len(closes(b)) == 1 and b.desk.book.held("S1").quantity == 1
        statuses = [x.params["status"] for x in actions(b) if x.kind == "close_half"]
        assert statuses and set(statuses) == {
            "proposed: this level already reduced the position once"}  # fmt: skip
    finally:
        await b.close()
