"""Crash recovery for real: an auto-managed session recording into DuckDB is killed with
SIGKILL while its entry order is working; the same command started again resumes the session
from the database, restores the working order and the intent behind it, the desk's switches
and alert numbering, finishes the day flat, and no order is sent twice. (Acknowledgements
restored across a restart are tested in test_store: the CLI has no way to acknowledge.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from kit.store import open_store

RUN = [sys.executable, "-m", "kit", "run", "--feed", "sim", "--auto", "--jsonl"]


def test_kill_9_mid_order_then_restart_resumes_without_sending_twice(tmp_path):
    db = str(tmp_path / "desk.duckdb")
    child = subprocess.Popen([*RUN, "--db", db, "--from", "09:59:50", "--speed", "5"],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    before = []
    assert child.stdout is not None
    for line in child.stdout:
        before.append(json.loads(line))
        if before[-1]["kind"] == "order" and before[-1]["status"] == "working":
            break
    working = before[-1]["client_id"]
    time.sleep(1.0)  # a second: the desk persists at least once in that time
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    with open_store(db) as store:  # what survived the crash
        orders = store.query("SELECT client_id, status FROM orders")
        assert orders.rows() == [(working, "working")]
        assert store.load_state("desk.paper_broker") is not None
        desk_state = store.load_state("desk.desk")
        assert desk_state["auto_manage"] is True and not desk_state["killed"]
        alerts_before = store.query("SELECT seq FROM alerts")["seq"].to_list()
        assert alerts_before and max(alerts_before) == desk_state["alerts"]["seq"]

    again = subprocess.run([*RUN, "--db", db], capture_output=True, text=True, timeout=600,
                           check=True)  # fmt: skip
    after = [json.loads(line) for line in again.stdout.splitlines()]
    recovery = [r for r in after if r["kind"] == "decision" and r["decision"] == "recovery"]
    assert "resuming the 2024-03-12 session" in recovery[0]["message"]
    assert "resuming 1 unfinished intents" in recovery[1]["message"]
    new_alerts = [r["seq"] for r in after if r["kind"] == "alert"]
    assert new_alerts and min(new_alerts) > max(alerts_before)  # numbering carried on
    summary = after[-1]
    assert summary["flat"] and summary["intents"][working.split("/")[0]] == "done"
    assert abs(summary["realized_pnl"] - summary["fills_cash"]) < 0.005

    with open_store(db) as store:
        audit = store.query("SELECT record FROM audit WHERE kind = 'order' ORDER BY ts")
        sent = [json.loads(r) for r in audit["record"]]
        pending = [r["client_id"] for r in sent if r["status"] == "pending"]
        assert len(pending) == len(set(pending))  # each client id was sent once
        assert pending.count(working) == 1  # the working order was resumed, not re-sent
        trade = store.query("SELECT status, realized_pnl FROM trade_logs").rows()
        assert trade == [("closed", summary["realized_pnl"])]
        fills = store.query("SELECT sum(cash_flow) AS cash, count(*) AS n FROM fills")
        assert round(fills["cash"][0], 2) == summary["fills_cash"]
        assert fills["n"][0] == summary["fills"]
