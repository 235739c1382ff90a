"""kit.core.config: the one reader of the environment. ``env`` strips and treats empty as unset,
``env_bool`` is the only boolean parser, numbers that do not parse are ConfigErrors naming the
variable and its value, and a ``.env`` that cannot be read is a ConfigError naming it."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kit.core import config
from kit.core.clock import SimClock
from kit.core.config import (
    ConfigError,
    Settings,
    env,
    env_bool,
    env_float,
    env_int,
    load_env,
    parse_bool,
)
from kit.execution.live import make_broker
from kit.portfolio.market import MarketState

KIT = Path(__file__).resolve().parents[1] / "kit"
VAR = "KIT_TEST_CONFIG_VALUE"


# --- env ---


def test_env_strips_and_treats_empty_as_unset() -> None:
    assert env(VAR, environ={VAR: "  value \n"}) == "value"
    assert env(VAR, environ={}) is None
    assert env(VAR, "fallback", environ={}) == "fallback"
    assert env(VAR, "fallback", environ={VAR: ""}) == "fallback"
    assert env(VAR, "fallback", environ={VAR: "   "}) == "fallback"


def test_env_reads_the_process_environment_when_no_mapping_is_given(monkeypatch) -> None:
    monkeypatch.setenv(VAR, " from-process ")
    assert env(VAR) == "from-process"
    assert env(VAR, environ={}) is None  # a mapping stands in for the environment entirely
    monkeypatch.delenv(VAR)
    assert env(VAR, "d") == "d"


# --- env_bool: the one parser ---


@pytest.mark.parametrize("text", ["1", "true", "True", "YES", "on", " On "])
def test_true_words(text: str) -> None:
    assert env_bool(VAR, False, environ={VAR: text}) is True
    assert parse_bool(VAR, text) is True


@pytest.mark.parametrize("text", ["0", "false", "FALSE", "no", "Off", " off\t"])
def test_false_words(text: str) -> None:
    assert env_bool(VAR, True, environ={VAR: text}) is False


@pytest.mark.parametrize("default", [True, False])
def test_unset_or_empty_bool_is_the_default(default: bool) -> None:
    assert env_bool(VAR, default, environ={}) is default
    assert env_bool(VAR, default, environ={VAR: " "}) is default


@pytest.mark.parametrize("text", ["maybe", "2", "y", "enabled", "ja"])
def test_anything_else_is_a_config_error_naming_variable_and_value(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{VAR}={text!r}")):
        env_bool(VAR, False, environ={VAR: text})


def test_the_live_trading_switch_uses_the_one_parser() -> None:
    clock = SimClock(datetime(2024, 3, 12, 15, tzinfo=UTC))
    with pytest.raises(ConfigError, match="KIT_LIVE_TRADING='maybe'"):
        make_broker(clock, MarketState(), live=True, env={"KIT_LIVE_TRADING": "maybe"})
    for off in ("", "no", "0"):
        with pytest.raises(ConfigError, match="live trading is off"):
            make_broker(clock, MarketState(), live=True, env={"KIT_LIVE_TRADING": off})
    on = {"KIT_LIVE_TRADING": "On", "IBKR_CPAPI_URL": "https://localhost:5000/v1/api",
          "IBKR_ACCOUNT_ID": "U7654321"}  # fmt: skip
    with pytest.raises(ConfigError, match="confirmation naming the account"):  # past the switch
        make_broker(clock, MarketState(), live=True, env=on)


# --- numbers ---


def test_env_int() -> None:
    assert env_int(VAR, 7, environ={VAR: " 26000 "}) == 26000
    assert env_int(VAR, 7, environ={}) == 7
    assert env_int(VAR, environ={VAR: ""}) is None
    with pytest.raises(ConfigError, match=re.escape(f"{VAR}='twenty': give an integer")):
        env_int(VAR, 7, environ={VAR: "twenty"})
    with pytest.raises(ConfigError, match="give a port"):
        env_int(VAR, 7, environ={VAR: "1.5"}, what="a port")


def test_env_float() -> None:
    assert env_float(VAR, environ={VAR: "2.5"}) == 2.5
    assert env_float(VAR, 1.0, environ={}) == 1.0
    for bad in ("a week", "nan", "inf", "-Infinity"):
        with pytest.raises(ConfigError, match=re.escape(f"{VAR}={bad!r}: give a number of days")):
            env_float(VAR, environ={VAR: bad}, what="a number of days")


def test_config_errors_are_value_errors() -> None:
    """Callers that caught ValueError from hand-rolled parsing still catch these."""
    assert issubclass(ConfigError, ValueError)


def test_settings_read_through_the_accessors(monkeypatch) -> None:
    monkeypatch.setenv("KIT_LOG_LEVEL", " debug ")
    monkeypatch.setenv("KIT_DATA_DIR", "")
    assert Settings.from_env() == Settings(data_dir=Path("data"), log_level="DEBUG")
    monkeypatch.setenv("KIT_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match="KIT_LOG_LEVEL"):
        Settings.from_env()


# --- .env ---


def test_dotenv_sets_what_is_unset_and_never_overrides(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / ".env"
    path.write_text(f"{VAR}=from-file\nKIT_TEST_CONFIG_SET=from-file\n")
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.setenv("KIT_TEST_CONFIG_SET", "from-process")
    try:
        assert load_env(str(path)) is True
        assert env(VAR) == "from-file"
        assert env("KIT_TEST_CONFIG_SET") == "from-process"
    finally:
        os.environ.pop(VAR, None)


def test_a_missing_dotenv_is_fine(tmp_path: Path) -> None:
    assert load_env(str(tmp_path / ".env")) is False


def test_dotenv_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"# settings\n" + b"A=1\n" * 5000 + b"KIT_TOKEN=caf\xe9\n")  # Latin-1
    with pytest.raises(ConfigError, match=r"\.env: not UTF-8 text \(byte 0xe9 on line 5002\)"):
        load_env(str(path))


def test_dotenv_that_cannot_be_read_is_a_config_error_naming_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / ".env"
    path.write_text("KIT_TOKEN=x\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make the read fail as it would

        def denied(p: str, **_: object) -> bool:
            raise PermissionError(13, "Permission denied", p)

        monkeypatch.setattr(config, "load_dotenv", denied)
    with pytest.raises(ConfigError, match=r"\.env: cannot be read \(Permission denied\)"):
        load_env(str(path))
    path.chmod(0o600)


def test_a_dotenv_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(ConfigError, match=r"\.env: is a directory"):
        load_env(str(tmp_path / ".env"))


# --- the rule itself ---

# Allowed to touch os.environ directly: config itself, and code that copies the whole
# environment for a child process.
ENVIRON_OK = {"core/config.py", "store/pgserver.py", "app/launch.py"}
# Still reading it by hand while others edit them; each should call the kit.core.config
# accessors (see the report) and then leave this list.
ENVIRON_PENDING: set[str] = set()  # every reader is converted
_READS = re.compile(r"os\.environ|os\.getenv|getenv\(|load_dotenv|dotenv_values")
_BOOL_WORDS = re.compile(r"""["'](?:1|true|yes|on)["']\s*,\s*["'](?:1|true|yes|on)["']""")


def _kit_files() -> dict[str, str]:
    return {p.relative_to(KIT).as_posix(): p.read_text() for p in KIT.rglob("*.py")}


def test_only_config_reads_the_environment() -> None:
    readers = {name for name, text in _kit_files().items() if _READS.search(text)}
    assert readers <= ENVIRON_OK | ENVIRON_PENDING, sorted(readers - ENVIRON_OK - ENVIRON_PENDING)


def test_there_is_one_boolean_parser() -> None:
    parsers = {name for name, text in _kit_files().items() if _BOOL_WORDS.search(text)}
    assert parsers <= {"core/config.py"} | ENVIRON_PENDING, sorted(parsers)
