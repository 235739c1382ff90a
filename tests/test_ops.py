"""Metrics and health of a real desk service: scraped over HTTP on 127.0.0.1 and parsed with
prometheus_client's own parser; counters move with real ticks, alerts, orders and store writes,
/readyz flips when the feed stops, label sets stay bounded."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from prometheus_client.parser import text_string_to_metric_families
from service_helpers import REPO, TOKEN, free_port

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.cli.main import main
from kit.cli.status import DEFAULT_METRICS_PORT
from kit.core.config import ConfigError, Settings
from kit.core.model import Quote
from kit.ops.metrics import LABEL_CAP, DeskMetrics, _Bounded
from kit.remote.client import CommandRefusedError
from kit.remote.gateway import GatewayConfig
from kit.ui.ops import OpsPage, grade, metrics_port, parse, quantile
from kit.ui.panels import notification_html

INTERFACE = ("kit_feed_messages_total", "kit_tick_to_alert_seconds", "kit_orders_total",
             "kit_store_rows_written_total", "kit_gateway_clients")  # fmt: skip


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskService]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    monkeypatch.setenv("KIT_MANUAL_POSITIONS", str(tmp_path / "manual.json"))
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, rules=str(rules),
                        db=str(tmp_path / "desk.duckdb"), metrics_port=0)  # fmt: skip
    svc = DeskService(cfg)
    await svc.start()
    yield svc
    await svc.close()


async def scrape(svc: DeskService) -> dict[str, dict[tuple, float]]:
    """Every sample by name, keyed by its sorted label pairs."""
    assert svc.ops is not None
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{svc.ops.port}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(samples: dict[str, dict[tuple, float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


async def poll(probe: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    """Await ``probe`` until it returns something truthy (a liveness bound, not a timing)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)
    return value


async def eventually(svc: DeskService, holds: Callable[[dict], Any]) -> dict:
    """The first scrape on which ``holds`` is true."""

    async def probe() -> dict | None:
        s = await scrape(svc)
        return s if holds(s) else None

    return await poll(probe)


async def get(svc: DeskService, path: str) -> httpx.Response:
    assert svc.ops is not None
    async with httpx.AsyncClient() as http:
        return await http.get(f"http://127.0.0.1:{svc.ops.port}{path}")


async def test_metrics_move_with_ticks_alerts_orders_and_store(service: DeskService) -> None:
    first = await scrape(service)
    for name in INTERFACE:
        assert name in first or name + "_bucket" in first, name
    client = await kit.connect(f"ws://127.0.0.1:{service.gateway.port}", TOKEN, name="ops")
    try:
        # the demo strangle is entered through the order manager: orders, fills, alerts
        s = await eventually(service, lambda s: total(s, "kit_orders_total")
                             and total(s, "kit_alerts_total")
                             and total(s, "kit_store_rows_written_total")
                             and total(s, "kit_order_round_trip_seconds_count")
                             and s["kit_orders_total"][(("status", "filled"),)])  # fmt: skip
        assert total(s, "kit_orders_total") > 0
        assert s["kit_orders_total"][(("status", "filled"),)] >= 1  # the demo entry filled
        assert total(s, "kit_alerts_total") > 0
        assert s["kit_feed_messages_total"][(("feed", "sim"),)] > first.get(
            "kit_feed_messages_total", {}).get((("feed", "sim"),), 0)  # fmt: skip
        assert s["kit_tick_to_evaluation_seconds_count"][()] > 0
        assert (
            s["kit_evaluation_seconds_count"][()] >= s["kit_tick_to_evaluation_seconds_count"][()]
        )
        assert s["kit_store_rows_written_total"][()] > 0
        assert s["kit_store_write_seconds_count"][()] > 0
        assert s["kit_gateway_clients"][()] == 1
        assert s["kit_gateway_snapshots_total"][()] > 0
        assert s["kit_feed_state"][(("feed", "sim"), ("state", "LIVE"))] == 1
        assert 0 <= s["kit_feed_data_age_seconds"][(("feed", "sim"),)] < 5  # this feed's own
        assert s["process_resident_memory_bytes"][()] > 0
        assert s["kit_event_loop_lag_seconds_count"][()] >= 0
        # the order manager's fills show as filled orders; every status is a code name
        statuses = {dict(k)["status"] for k in s["kit_orders_total"]}
        assert statuses <= {"pending", "working", "partial", "filled", "cancelled", "rejected"}
        # bounded label sets: no contract or position id anywhere, few series per metric
        ids = set(service.desk.book.ids)
        for name, series in s.items():
            values = {v for labels in series for _, v in labels}
            assert not any("SPX" in v and v != "SPX" for v in values), (name, values)
            assert not values & ids, name
            assert len(series) <= 64, name
        # a command is timed and counted by name and outcome
        await client.command("auto_manage", on=False)
        with pytest.raises(CommandRefusedError):
            await client.command("no_such_command")
        s = await scrape(service)
        cmds = s["kit_gateway_commands_total"]
        assert cmds[(("cmd", "auto_manage"), ("outcome", "ok"))] == 1
        assert cmds[(("cmd", "unknown"), ("outcome", "refused"))] == 1
    finally:
        await client.close()


async def test_health_and_readiness_flip_when_the_feed_stops(
    service: DeskService, capsys: pytest.CaptureFixture[str]
) -> None:
    live = await get(service, "/healthz")
    assert live.status_code == 200
    doc = live.json()
    assert doc["status"] == "live" and doc["engine"] == service.engine["id"]

    async def ready() -> httpx.Response | None:
        r = await get(service, "/readyz")
        return r if r.status_code == 200 else None

    r = await poll(ready)
    checks = r.json()["checks"]
    assert checks["feeds"]["states"] == {"sim": "LIVE"} and checks["store"]["ok"]
    assert checks["broker"]["ok"] and checks["engine"]["ok"]

    port = service.ops.port  # type: ignore[union-attr]
    assert await asyncio.to_thread(main, ["status", "--metrics-port", str(port)]) == 0
    assert "ready" in capsys.readouterr().out

    await service.feed.close()  # the feed stops: CLOSED, and its data ages
    r = await get(service, "/readyz")
    assert r.status_code == 503
    body = r.json()
    assert not body["ready"] and body["checks"]["feeds"]["states"] == {"sim": "CLOSED"}
    assert await asyncio.to_thread(main, ["status", "--metrics-port", str(port), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ready"] is False
    s = await scrape(service)
    assert s["kit_feed_state"][(("feed", "sim"), ("state", "CLOSED"))] == 1


def test_status_without_a_service_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--metrics-port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing answers" in err


def test_label_values_are_bounded() -> None:
    bound = _Bounded()
    names = {bound(f"rule{i}") for i in range(LABEL_CAP * 3)}
    assert len(names) == LABEL_CAP + 1 and "other" in names
    assert bound("rule0") == "rule0"  # a value seen before the cap keeps its name


async def test_the_ops_page_shows_the_service_live(service: DeskService) -> None:
    client = await kit.connect(f"ws://127.0.0.1:{service.gateway.port}", TOKEN, name="ops-page")
    try:
        port = metrics_port(client)  # announced in the hello
        assert port == service.ops.port  # type: ignore[union-attr]
        page = OpsPage(client, port)

        async def shown() -> str | None:
            text = await page.refresh()
            return text if "msg/s" in text and "engine" in text and "ready," in text else None

        text = await poll(shown)
        assert "feed sim" in text and "LIVE" in text and "kit-ops-green" in text
        assert "data processing (tick to evaluation)" in text and " ms" in text
        assert page.body.value == text  # what the widget shows
        await service.feed.close()
        text = await page.refresh()
        assert "NOT READY" in text and "CLOSED" in text and "kit-ops-red" in text
    finally:
        await client.close()


def test_latency_grades_and_quantiles_from_buckets() -> None:
    text = "\n".join([
        "# TYPE kit_x_seconds histogram",
        'kit_x_seconds_bucket{le="0.01"} 90.0',
        'kit_x_seconds_bucket{le="0.1"} 99.0',
        'kit_x_seconds_bucket{le="1.0"} 100.0',
        'kit_x_seconds_bucket{le="+Inf"} 100.0',
        "kit_x_seconds_count 100.0",
        "kit_x_seconds_sum 2.0",
    ])  # fmt: skip
    s = parse(text + "\n")
    assert quantile(s, "kit_x_seconds", 0.5) == 0.01
    assert quantile(s, "kit_x_seconds", 0.99) == 0.1
    assert quantile(s, "kit_y_seconds", 0.99) is None
    assert [grade(v, 0.05) for v in (0.01, 0.1, 0.2, None)] == ["green", "amber", "red", "green"]


def test_kit_serve_metrics_port_status_and_the_ops_notebook_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real `kit serve --metrics-port` process (logging as JSON lines); `kit status` reads
    it; the monitor notebook with ?page=ops renders the operations page from it."""
    port, mport = free_port(), free_port()
    env = {**os.environ, "KIT_TOKEN": TOKEN, "KIT_MANUAL_POSITIONS": str(tmp_path / "m.json"),
           "KIT_LOG_FORMAT": "json"}  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "kit", "serve", "--port", str(port),
                             "--speed", "10", "--metrics-port", str(mport)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        for _ in range(600):  # start-up: up to a minute on a loaded machine
            if main(["status", "--metrics-port", str(mport)]) == 0:
                break
            assert proc.poll() is None, "kit serve exited"
            time.sleep(0.1)
        out = capsys.readouterr().out
        assert "ready" in out and "feeds   ok" in out and "broker  ok" in out
        nb = nbformat.read(REPO / "notebooks" / "monitor.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("print(type(m).__name__, m.body.value)"))
        os.environ.update(KIT_TOKEN=TOKEN, KIT_SERVICE_URL=f"ws://127.0.0.1:{port}",
                          QUERY_STRING="page=ops")  # fmt: skip
        try:
            NotebookClient(nb, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": str(REPO)}}).execute()  # fmt: skip
        finally:
            for k in ("KIT_TOKEN", "KIT_SERVICE_URL", "QUERY_STRING"):
                os.environ.pop(k)
        text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        assert text.startswith("OpsPage") and "feed sim" in text and "LIVE" in text, text
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    assert "kit.remote.gateway" in {d["logger"] for d in lines}  # the notebook's connection
    assert TOKEN not in (tmp_path / "serve.log").read_text()


async def test_every_metric_the_grafana_dashboard_queries_is_served(service: DeskService) -> None:
    dashboard = json.loads((REPO / "deploy/grafana/theta-desk.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {re.sub(r"_(bucket|count|sum)$", "", m)
               for e in exprs for m in re.findall(r"\b((?:kit|process)_[a-z_]+)\b", e)}  # fmt: skip
    assert len(queried) >= 20
    scrape_cfg = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    job = scrape_cfg["scrape_configs"][0]
    assert job["job_name"] == "kit" and all('job="$job"' in e for e in exprs)
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_METRICS_PORT}"]
    client = await kit.connect(f"ws://127.0.0.1:{service.gateway.port}", TOKEN, name="grafana")
    try:
        await client.command("auto_manage", on=False)  # a command's latency series exists
        s = await eventually(service, lambda s: total(s, "kit_alerts_total"))
    finally:
        await client.close()
    served = {re.sub(r"_(bucket|count|sum|total|created)$", "", n) for n in s} | set(s)
    missing = {m for m in queried if m not in served and re.sub(r"_total$", "", m) not in served}
    assert not missing, missing


def test_log_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="KIT_LOG_FORMAT: 'xml' is not one of text, json"):
        Settings.from_env()
    monkeypatch.setenv("KIT_LOG_FORMAT", "JSON")
    assert Settings.from_env().log_format == "json"


def test_a_notification_cannot_be_injected_by_an_alert_text() -> None:
    hostile = 'x" onload="alert(1)\'</img><script>alert(2)</script>'
    out = notification_html(7, "Theta Desk CRITICAL: rule", hostile)
    attrs: dict[str, str | None] = {}

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, a: list[tuple[str, str | None]]) -> None:
            assert tag == "img"  # one element, no script
            attrs.update(a)

    Tags().feed(out)
    assert set(attrs) == {"alt", "style", "src", "data-seq", "onerror"}
    js = attrs["onerror"] or ""
    payload = js.split("const a=", 1)[1].split(";const f=", 1)[0]
    assert json.loads(payload) == ["Theta Desk CRITICAL: rule",
                                   {"body": hostile, "tag": "kit-alert-7"}]  # fmt: skip


def test_tick_to_alert_is_timed_on_the_tick_that_raises_it() -> None:
    """The desk benchmark's book; a quote on P0's short put that lifts its profit past the 25%
    target raises the alert inside ``process``: one tick-to-alert observation, one per tick
    evaluated, and the alert counted by rule and severity."""
    spec = importlib.util.spec_from_file_location("bench_desk", REPO / "benchmarks" / "desk.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    desk, clock, _ = bench.build_desk(3)
    m = DeskMetrics()
    m.watch_desk(desk)
    p0 = desk.book.positions["P0"]
    put, call = p0.legs[0].contract, p0.legs[1].contract
    entry = bench._mid(put, 5000.0) + bench._mid(call, 5000.0)
    mid = entry * (1 - 0.255) - bench._mid(call, 5000.0)  # 25.5% of the credit kept
    clock.advance(0.001)
    quiet = bench._quote(call, 5000.0, clock.now_ns())  # unchanged: nothing fires
    assert desk.process([quiet]) == []
    clock.advance(0.001)
    crossing = Quote(put, round(mid * 0.99, 2), round(mid * 1.01, 2), 10, 10, clock.now_ns())
    emitted = desk.process([crossing])
    assert [r.alert.rule for r in emitted] == ["profit_target"]
    reg = m.registry
    assert reg.get_sample_value("kit_tick_to_evaluation_seconds_count") == 2
    assert reg.get_sample_value("kit_tick_to_alert_seconds_count") == 1
    assert reg.get_sample_value("kit_evaluation_seconds_count") == 2
    assert reg.get_sample_value("kit_alerts_total",
                                {"rule": "profit_target", "severity": "INFO"}) == 1  # fmt: skip
