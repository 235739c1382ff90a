"""The emulated Client Portal gateway serves the unmodified reference client, ``ibind``: its
REST client finds an SPX option through secdef search/strikes/info and its WebSocket client,
configured only by IBIND_REST_URL / IBIND_WS_URL, receives bid, ask and delta for it.

ibind reads its settings from the environment at import and runs its socket in threads, so it
runs in a child process (which also keeps its threads out of the test process)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

from kit.adapters.cpapi.simulated import SimGateway
from kit.adapters.sim.market import SimConfig

CLIENT = r"""
import json, os, time
from ibind import IbkrClient, IbkrWsClient, events
from ibind.ibkr_ws.ibkr_subscriptions import MarketDataSubscription
from ibind.ws.ws_sinks import CallbackSink

rest = IbkrClient(auto_register_shutdown=False)
spx = next(r for r in rest.search_contract_by_symbol("SPX").data if r["symbol"] == "SPX")
month = next(s for s in spx["sections"] if s["secType"] == "OPT")["months"].split(";")[0]
calls = rest.search_strikes_by_conid(spx["conid"], "OPT", month).data["call"]
info = rest.search_secdef_info_by_conid(spx["conid"], "OPT", month,
                                        strike=str(calls[len(calls) // 2]), right="C").data
conid = str(info[0]["conid"])
seen = {}
sink = CallbackSink()
sink.on(events.MarketData, lambda e: seen.update(e.data) if e.conid == conid else None)
ws = IbkrWsClient(sink=sink, synchronous_output_events=True)
started = ws.start()
ws.subscribe(MarketDataSubscription(conid=conid, fields=["31", "84", "86", "7308", "7633"]))
deadline = time.time() + 20
while time.time() < deadline and not {"bid_price", "ask_price", "delta"} <= set(seen):
    time.sleep(0.05)
print(json.dumps({"conid": conid, "started": started, "fields": seen}), flush=True)
os._exit(0)  # ibind's socket threads take seconds to stop; the answer is printed
"""


async def ibind(port: int) -> dict:
    """Run the ibind client against the gateway on ``port``; its JSON answer."""
    env = {**os.environ, "IBIND_REST_URL": f"http://127.0.0.1:{port}/v1/api/",
           "IBIND_WS_URL": f"ws://127.0.0.1:{port}/v1/api/ws",
           "IBIND_ACCOUNT_ID": "DU1234567"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    doc = json.loads(out.decode().strip().splitlines()[-1])
    assert doc["started"] is True
    fields = doc["fields"]
    bid, ask, delta = (float(fields[k]) for k in ("bid_price", "ask_price", "delta"))
    assert 0 < bid < ask and 0.0 < delta < 1.0
    assert fields["implied_vol_percent"].endswith("%")
    return doc


async def test_unmodified_ibind_client_gets_bid_ask_and_delta() -> None:
    async with SimGateway(config=SimConfig(seed=3), tick_s=0.1, heartbeat_s=1.0) as gw:
        doc = await ibind(gw.port)
    c = gw.emu.contract_of(int(doc["conid"]))
    assert c is not None and c.underlying == "SPX" and c.is_call
    assert f"smd+{doc['conid']}+" in " ".join(gw.emu.stream.messages)


async def test_kit_emulate_cpapi_serves_ibind_on_its_port() -> None:
    """The interface as the issue states it: ``kit emulate cpapi --port P`` in its own process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "emulate", "cpapi", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = await asyncio.to_thread(proc.stdout.readline)  # printed once it listens
        assert line.startswith("IBKR Client Portal emulator"), line + proc.stderr.read()
        doc = await ibind(port)
        assert int(doc["conid"]) > 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
