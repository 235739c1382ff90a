import json
import subprocess
import sys


def kit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], capture_output=True, text=True, env=env
    )


def test_symbol_converts_every_form():
    out = kit("symbol", "SPXW  240119C04700000", "--at", "2024-01-19T14:30:00-05:00")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["dxlink"] == ".SPXW240119C4700" and data["thetadata"]["strike"] == 4_700_000
    assert data["expires_at"] == "2024-01-19T21:00:00+00:00"
    assert data["years_to_expiry"] * 525_600 == 90
    btc = json.loads(kit("symbol", "P-BTC-90000-310125").stdout)
    assert btc["delta"] == "P-BTC-90000-310125" and btc["expires_at"].endswith("12:00:00+00:00")


def test_session_on_an_early_close():
    data = json.loads(kit("session", "2024-11-29").stdout)
    assert data["close"] == "2024-11-29T18:00:00+00:00" and data["early_close"] is True
    assert json.loads(kit("session", "2024-12-25").stdout)["open"] is None


def test_bad_arguments_exit_2_with_a_message_and_no_traceback():
    for args in (
        ("symbol", "NOPE"),
        ("session", "2024-02-30"),
        ("frobnicate",),
        ("symbol", ".SPXW240119C4700", "--at", "2024-01-19T14:30"),
        ("monitor", "--port", "9111", "--service-port", "9111"),  # one port for two servers
    ):
        out = kit(*args)
        assert out.returncode == 2, args
        assert "error" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_broken_config_is_a_clear_error():
    import os

    out = kit("session", "2024-11-29", env=os.environ | {"KIT_LOG_LEVEL": "LOUD"})
    assert out.returncode == 2 and "KIT_LOG_LEVEL" in out.stderr
