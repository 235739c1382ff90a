"""The workspace promises of the foundation issue: layout, one source of dependencies, the CLI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_layout_matches_the_design():
    for d in ("kit", "notebooks", "data", "tests", "benchmarks", ".ci"):
        assert (ROOT / d).is_dir(), d
    for f in (
        "environment.yml",
        "voila.json",
        "README.md",
        "pyproject.toml",
        "Makefile",
        ".ci/run",
        ".gitignore",
    ):
        assert (ROOT / f).is_file(), f


def test_environment_yml_follows_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pins = [d for d in deps if isinstance(d, str)]
    pip = [d["pip"] for d in deps if isinstance(d, dict)]
    assert sorted(p.split("=")[0] for p in pins) == ["pip", "python"], "only python and pip"
    python_pin = next(p for p in pins if p.startswith("python"))
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"]).group(1)
    assert python_pin == f"python={minimum}", "python pin drifted from requires-python"
    assert pip == [["-e .[dev]"]], "the pip section installs the project with its dev extra only"
    assert "dev" in PYPROJECT["project"]["optional-dependencies"]


def test_required_dependencies_are_declared():
    names = {
        re.split(r"[<>=!~\[ ]", d)[0].lower().replace("-", "_")
        for d in PYPROJECT["project"]["dependencies"]
    }
    for needed in (
        "jupyterlab",
        "ipywidgets",
        "voila",
        "bqplot",
        "pandas",
        "numpy",
        "polars",
        "duckdb",
        "nest_asyncio",
        "websockets",
        "ib_async",
    ):
        assert needed in names, needed
    assert "ib_async>=2.1,<3" in PYPROJECT["project"]["dependencies"]
    dev = " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"]).lower()
    for needed in (
        "pytest",
        "pytest-asyncio",
        "hypothesis",
        "nbmake",
        "pytest-playwright",
        "ruff",
        "quantlib",
    ):
        assert needed in dev, needed


@pytest.mark.parametrize(
    "path", ["data/desk.duckdb", ".venv/bin/python", "logs/desk.log", "desk.log", ".env"]
)
def test_runtime_files_are_ignored(path):
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci/run").read_text()
    assert "make test" in readme and ci.rstrip().endswith("make test")


def test_cli_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "kit", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "symbol" in out and "session" in out
    script = Path(sys.executable).with_name("kit")
    assert subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=True
    ).stdout == out.replace("python -m kit", "kit")
