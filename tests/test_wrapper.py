"""``bin/kit`` runs the checkout's virtualenv from anywhere, and says what to do without one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bin_kit_runs_the_checkout_venv_from_another_directory(tmp_path: Path) -> None:
    out = subprocess.run([str(REPO / "bin" / "kit"), "session", "2024-11-29"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["early_close"] is True


def test_bin_kit_without_a_venv_names_the_setup_command(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    shutil.copy2(REPO / "bin" / "kit", tmp_path / "bin" / "kit")
    out = subprocess.run([str(tmp_path / "bin" / "kit"), "--help"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 2
    assert "make setup" in out.stderr and "Traceback" not in out.stderr
