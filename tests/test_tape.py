"""``kit tape`` against the ThetaData emulator: every quote the adapter delivered, compared with
the vendor's own history (``/v3/option/history/quote``), through a dropped socket and a silence."""

import asyncio
import json
import os
import socket
import sys
from datetime import datetime

import httpx
import pyarrow.parquet as pq
import pytest
from service_helpers import REPO

from kit.adapters.thetadata.config import ThetaDataConfig
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.core.clock import NEW_YORK, SimClock
from kit.core.symbology import from_occ


@pytest.fixture
async def emu():
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    async with ThetaDataEmulator(clock=clock) as e:
        yield e


def env(emu: ThetaDataEmulator) -> dict[str, str]:
    return {**os.environ, "THETADATA_REST_PORT": str(emu.rest_port),
            "THETADATA_WS_PORT": str(emu.ws_port), "PYTHONPATH": str(REPO)}  # fmt: skip


async def kit(emu: ThetaDataEmulator, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kit", *args, env=env(emu), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_tape_equals_the_vendors_history_through_a_drop_and_a_silence(emu, tmp_path):
    out = tmp_path / "tape.parquet"
    args = ["--feed", "thetadata", "--underlying", "SPXW", "--strikes", "5", "--seconds", "9"]
    run = asyncio.create_task(kit(emu, "tape", *args, "--out", str(out)))
    async with httpx.AsyncClient() as client:
        faults = f"http://127.0.0.1:{emu.rest_port}/faults"
        async with asyncio.timeout(30):
            while emu.connections == 0:  # the recorder is subscribed
                await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        assert (await client.post(faults, json={"drop": 1})).json() == {"ok": True}
        await asyncio.sleep(2.0)
        assert (await client.post(faults, json={"silence_s": 2.5})).json() == {"ok": True}
    code, stdout, stderr = await run
    assert code == 0, stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["contracts"] == 10 and summary["unfilled"] == []
    assert summary["reconnects"] >= 1 and summary["backfilled"] > 0

    table = pq.read_table(out)
    assert table.column_names == ["ts", "contract", "bid", "ask", "bid_size", "ask_size"]
    rows = table.to_pylist()
    assert len(rows) == summary["quotes"] > 0
    by_contract: dict[str, list[dict]] = {}
    for r in rows:
        by_contract.setdefault(r["contract"], []).append(r)
    assert len(by_contract) == 10
    rest = ThetaDataREST(ThetaDataConfig(rest_port=emu.rest_port, ws_port=emu.ws_port))
    try:
        for symbol, taped in by_contract.items():
            first = int(taped[0]["ts"].timestamp() * 1e9)
            last = int(taped[-1]["ts"].timestamp() * 1e9)
            vendor = await rest.history_quotes(from_occ(symbol), first, last)
            got = [(int(r["ts"].timestamp() * 1e9), r["bid"], r["ask"], r["bid_size"],
                    r["ask_size"]) for r in taped]  # fmt: skip
            want = [(q.ts_ns, q.bid, q.ask, q.bid_size, q.ask_size) for q in vendor]
            assert got == want, symbol  # no hole, no duplicate, nothing reordered
    finally:
        await rest.aclose()


def test_bad_arguments_and_an_absent_terminal_are_one_line_errors(tmp_path, capsys, monkeypatch):
    from kit.cli.main import main

    def refused(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["tape", *argv])
        assert exit_.value.code == 2
        return capsys.readouterr().err

    assert f"{tmp_path}: is a directory, not a file" in refused("--seconds", "1", "--out",
                                                                 str(tmp_path))  # fmt: skip
    missing = tmp_path / "nowhere" / "t.parquet"
    assert "does not exist" in refused("--seconds", "1", "--out", str(missing))
    assert "--strikes" in refused("--seconds", "1", "--strikes", "0", "--out", "t.parquet")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("THETADATA_REST_PORT", str(s.getsockname()[1]))
    assert main(["tape", "--seconds", "1", "--out", str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err
    assert "ThetaData Terminal" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.parquet").exists()
