"""One data directory wherever a kernel starts: Voila runs a page's kernel in ``notebooks/``,
and a bare ``data/`` there would be a second, empty store beside the recorded one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.core.config import data_dir, project_root
from kit.positions.manual import manual_path
from kit.store import store_target


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "desk"
    (root / "kit").mkdir(parents=True)
    (root / "kit" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "notebooks").mkdir()
    return root


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KIT_DATA_DIR", "KIT_DB_URL", "DB_CONNECTION_STRING", "KIT_MANUAL_POSITIONS"):
        monkeypatch.setenv(var, "")


@pytest.mark.usefixtures("clean_env")
def test_a_kernel_in_notebooks_uses_the_checkout_data_dir(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkout / "notebooks")
    assert project_root() == checkout.resolve()
    assert data_dir() == checkout.resolve() / "data"
    assert Path(store_target()) == checkout.resolve() / "data" / "desk.duckdb"
    assert manual_path() == checkout.resolve() / "data" / "manual_positions.json"


@pytest.mark.usefixtures("clean_env")
def test_at_the_root_the_path_stays_short(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkout)
    assert data_dir() == Path("data")
    assert store_target() == str(Path("data") / "desk.duckdb")


@pytest.mark.usefixtures("clean_env")
def test_kit_data_dir_wins_and_outside_a_checkout_data_is_local(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkout / "notebooks")
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"
    assert Path(store_target()) == tmp_path / "elsewhere" / "desk.duckdb"
    monkeypatch.setenv("KIT_DATA_DIR", "")
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert project_root() is None
    assert data_dir() == Path("data")
