"""The alert log file every desk command keeps when KIT_ALERT_LOG is set: JSON lines, rotated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.sinks.jsonl import RotatingJsonlSink

REPO = Path(__file__).resolve().parents[1]


def test_kit_run_writes_a_rotated_alert_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "alerts.jsonl"
    env = {**os.environ, "KIT_ALERT_LOG": str(log), "KIT_ALERT_LOG_MB": "0.002",
           "KIT_ALERT_LOG_KEEP": "2", "KIT_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "kit", "run", "--feed", "sim", "--script",
                          "rapid_drop", "--speed", "max"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    files = sorted(log.parent.iterdir())
    assert [p.name for p in files][:2] == ["alerts.jsonl", "alerts.jsonl.1"]  # it rotated
    assert len(files) <= 3 and all(p.stat().st_size <= 2_000 for p in files)
    records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    assert records and all(r["kind"] in ("alert", "decision", "order", "fill", "feed")
                           and r["ts"] for r in records)  # fmt: skip
    assert {"delta", "strike_breach"} & {r.get("rule") for r in records}  # the drop's alerts


def test_a_bad_alert_log_setting_is_one_line() -> None:
    with pytest.raises(ValueError, match="KIT_ALERT_LOG_MB"):
        RotatingJsonlSink.from_env({"KIT_ALERT_LOG": "x.jsonl", "KIT_ALERT_LOG_MB": "lots"})
    assert RotatingJsonlSink.from_env({}) is None
