"""The metrics port: ``/metrics`` (Prometheus text), ``/healthz`` (live) and ``/readyz``
(ready to trade on: feeds LIVE with fresh data, store writing, broker answering, engine OK).

It runs on the desk's own event loop (tornado on asyncio), on 127.0.0.1 only. That is deliberate:
if the loop is blocked, ``/healthz`` stops answering, which is exactly what "not live" means
for a process whose every part runs on that loop. A scrape reads counters the objects already
keep; it never waits on the broker or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from kit.core.clock import NS_PER_S
from kit.core.model import FeedState
from kit.ops.metrics import DeskMetrics, feed_state

log = logging.getLogger(__name__)

BROKER_SILENT_S = 5.0  # the broker's account call has not succeeded for this long: not connected
STORE_BACKLOG_FRACTION = 0.8  # the writer's buffer past this share of its bound: not writing


def attach(service: Any) -> DeskMetrics:
    """Metrics on a wired :class:`~kit.app.service.DeskService` (before it starts)."""
    metrics = DeskMetrics()
    metrics.watch_desk(service.desk)
    metrics.watch_gateway(service.gateway)
    if service.kept is not None:
        metrics.watch_writer(service.kept.writer)
    return metrics


def liveness(service: Any) -> dict[str, Any]:
    """Answering at all is the liveness; the detail says which engine and how it is."""
    engine = service.engine
    return {
        "status": "live",
        "engine": engine["id"],
        "pid": engine["pid"],
        "version": engine["version"],
        "uptime_s": round((time.time_ns() - engine["started_ns"]) / NS_PER_S, 1),
        "engine_state": service.desk.health.state()["state"],
    }


def readiness(service: Any) -> dict[str, Any]:
    """Each check with ``ok`` and a ``detail`` a person can act on; ``ready`` when all pass."""
    desk = service.desk
    age = max(0.0, (desk.clock.now_ns() - desk.last_data_ns) / NS_PER_S)
    limit = desk.rules.feed_stale.after_s
    states = {f.name: feed_state(desk, f).value for f in desk.feeds}
    feeds_ok = bool(states) and all(s == FeedState.LIVE.value for s in states.values())
    checks: dict[str, dict[str, Any]] = {
        "feeds": {
            "ok": feeds_ok and age <= limit,
            "states": states,
            "data_age_s": round(age, 3),
            "max_age_s": limit,
            "detail": ", ".join(f"{n}: {s}" for n, s in states.items())
            + f"; data {age:.1f} s old (limit {limit:g} s)",
        },
        "store": _store(service),
        "broker": _broker(service),
        "engine": _engine(desk),
    }
    return {
        "ready": all(c["ok"] for c in checks.values()),
        "engine": service.engine["id"],
        "checks": checks,
    }


def _store(service: Any) -> dict[str, Any]:
    if service.kept is None:
        return {"ok": True, "detail": "no store configured (in memory)"}
    w = service.kept.writer
    limit = w.config.max_rows * STORE_BACKLOG_FRACTION
    ok = bool(w.available) and w.buffered < limit
    detail = "writing" if w.available else "store unavailable: buffering"
    return {
        "ok": ok,
        "detail": f"{detail}, {w.buffered} rows buffered",
        "buffered": w.buffered,
        "written": w.stats["written"],
        "dropped": w.stats["dropped"],
    }


def _broker(service: Any) -> dict[str, Any]:
    seen = getattr(service, "broker_seen_ns", 0)
    silent = (time.time_ns() - seen) / NS_PER_S if seen else None
    ok = silent is not None and silent <= BROKER_SILENT_S
    name = getattr(service.broker, "name", "broker")
    detail = (
        f"{name}: answered {silent:.1f} s ago"
        if silent is not None
        else f"{name}: has not answered yet"
    )
    return {"ok": ok, "detail": detail, "broker": name}


def _engine(desk: Any) -> dict[str, Any]:
    h = desk.health.state()
    faults = "; ".join(f"{f['stage']}: {f['error']}" for f in h["faults"])
    detail = "kill switch on" if desk.killed else (faults or "OK")
    return {"ok": h["state"] == "OK" and not desk.killed, "detail": detail, "state": h["state"]}


class _Handler(RequestHandler):
    def initialize(self, server: OpsServer) -> None:
        self.ops = server

    def _json(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))


class _Metrics(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.ops.metrics.registry))


class _Live(_Handler):
    def get(self) -> None:
        self._json(liveness(self.ops.service))


class _Ready(_Handler):
    def get(self) -> None:
        doc = readiness(self.ops.service)
        self._json(doc, 200 if doc["ready"] else 503)


def _access_log(handler: RequestHandler) -> None:
    """Scrapes every few seconds, and a 503 is an answer, not a server error: debug only."""
    log.debug("ops: %d %s", handler.get_status(), handler.request.uri)


class OpsServer:
    """Serves the metrics and health of one service on ``host:port`` (0: any free port)."""

    def __init__(self, service: Any, metrics: DeskMetrics, port: int, host: str = "127.0.0.1"):
        self.service, self.metrics, self.host = service, metrics, host
        self.port = port
        self._http: HTTPServer | None = None
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = Application(
            [
                ("/metrics", _Metrics, {"server": self}),
                ("/healthz", _Live, {"server": self}),
                ("/readyz", _Ready, {"server": self}),
            ],
            log_function=_access_log,
        )
        try:
            sockets = bind_sockets(self.port, self.host)
        except OSError as exc:
            raise ValueError(
                f"cannot listen on {self.host}:{self.port} for metrics ({exc.strerror or exc})"
            ) from None
        self.port = sockets[0].getsockname()[1]
        self._http = HTTPServer(app)
        self._http.add_sockets(sockets)
        self._probe = asyncio.create_task(self.metrics.probe_loop(), name="ops:loop-lag")
        log.info("ops: metrics and health on http://%s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None
