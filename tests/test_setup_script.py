"""scripts/system-deps.sh decides what `make test` must install, run against fake ``dpkg``,
``apt-get``, ``id``, ``sudo`` and Python on a PATH holding nothing else: nothing is ever installed,
each fake only records how it was called."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"
TOOLS = ("grep", "env", "true")  # real programs the script (or the fake sudo) runs


class Fakes:
    """A bin directory with recording fakes; ``calls()`` is what the script ran, in order."""

    def __init__(self, tmp: Path) -> None:
        self.bin, self.log = tmp / "bin", tmp / "calls.log"
        self.bin.mkdir()
        self.log.touch()
        self.venv = tmp / "venv"  # absent: the script looks at the Python's ensurepip
        for tool in TOOLS:
            (self.bin / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
        self.python(ensurepip=True)

    def script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f'#!{BASH}\necho "{name} $*" >> "{self.log}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def dpkg(self, *installed: str, removed: tuple[str, ...] = ()) -> None:
        """``dpkg -s P`` as Debian answers: the status of an installed package, else exit 1;
        a ``removed`` one whose config files remain exits 0 too, with a different status."""
        body = f"""for p in {" ".join(installed)}; do
    if [ "$2" = "$p" ]; then echo "Package: $p"; echo "Status: install ok installed"; exit 0; fi
done
for p in {" ".join(removed)}; do
    if [ "$2" = "$p" ]; then echo "Package: $p"; echo "Status: deinstall ok config-files"
        exit 0; fi
done
echo "dpkg-query: package '$2' is not installed" >&2; exit 1"""
        self.script("dpkg", body)

    def uid(self, uid: int) -> None:
        self.script("id", f"echo {uid}")

    def sudo(self, *, passwordless: bool) -> None:
        self.script("sudo", 'shift; exec "$@"' if passwordless else "exit 1")

    def python(self, *, ensurepip: bool) -> None:
        self.script("python3", "exit 0" if ensurepip else "exit 1")

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        self.script("apt-get", "exit 0")
        return subprocess.run(
            [BASH, str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=self.bin.parent,
            env={"PATH": str(self.bin), "VENV": str(self.venv), **env},
        )  # fmt: skip

    def calls(self, program: str | None = None) -> list[str]:
        lines = self.log.read_text().splitlines()
        return [c for c in lines if program is None or c.split()[0] == program]


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def test_everything_installed_installs_nothing(fakes: Fakes) -> None:
    fakes.dpkg("postgresql", "chromium")
    fakes.uid(0)
    proc = fakes.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert fakes.calls("dpkg") == ["dpkg -s postgresql", "dpkg -s chromium"]
    assert fakes.calls("apt-get") == []


def test_missing_as_root_installs_only_the_missing_packages(fakes: Fakes) -> None:
    fakes.dpkg("postgresql")
    fakes.uid(0)
    proc = fakes.run()
    assert proc.returncode == 0, proc.stderr
    installs = fakes.calls("apt-get")
    assert installs[0] == "apt-get update -q"
    assert installs[1] == "apt-get install -y -q --no-install-recommends chromium"
    assert len(installs) == 2


def test_missing_with_passwordless_sudo_installs_through_sudo(fakes: Fakes) -> None:
    fakes.dpkg()
    fakes.uid(1000)
    fakes.sudo(passwordless=True)
    proc = fakes.run()
    assert proc.returncode == 0, proc.stderr
    sudo = fakes.calls("sudo")
    assert sudo[0] == "sudo -n true"  # asked first, without a password prompt
    assert "apt-get install -y -q --no-install-recommends postgresql chromium" in sudo[-1]
    assert fakes.calls("apt-get")[-1].endswith("postgresql chromium")


def test_a_removed_package_with_config_files_left_counts_as_missing(fakes: Fakes) -> None:
    fakes.dpkg("postgresql", removed=("chromium",))
    fakes.uid(0)
    assert fakes.run().returncode == 0
    assert fakes.calls("apt-get")[-1].endswith("--no-install-recommends chromium")


@pytest.mark.parametrize("sudo", ["absent", "needs a password"])
def test_missing_without_root_or_sudo_stops_with_the_command(fakes: Fakes, sudo: str) -> None:
    fakes.dpkg("chromium")
    fakes.uid(1000)
    if sudo != "absent":
        fakes.sudo(passwordless=False)
    proc = fakes.run()
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1  # one line
    assert "run: sudo apt-get install -y postgresql\n" in proc.stderr
    assert fakes.calls("apt-get") == []


def test_no_venv_and_no_ensurepip_adds_python3_venv(fakes: Fakes) -> None:
    fakes.dpkg("postgresql", "chromium")
    fakes.uid(1000)
    fakes.python(ensurepip=False)
    proc = fakes.run()
    assert proc.returncode != 0
    assert "sudo apt-get install -y python3-venv" in proc.stderr
    (fakes.venv / "bin").mkdir(parents=True)
    (fakes.venv / "bin" / "python").symlink_to(fakes.bin / "python3")
    assert fakes.run().returncode == 0  # a venv exists: no need for ensurepip


def _fake_programs(root: Path, *names: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text("#!/bin/sh\n")
        (root / name).chmod(0o755)


def test_without_dpkg_the_programs_are_checked_not_installed(fakes: Fakes, tmp_path: Path) -> None:
    pg_root, chromium = tmp_path / "postgresql", tmp_path / "chromium" / "chromium"
    env = {"SYSTEM_DEPS_PG_ROOT": str(pg_root), "SYSTEM_DEPS_CHROMIUM": str(chromium)}
    proc = fakes.run(**env)
    assert proc.returncode != 0
    assert "initdb, pg_ctl, postgres" in proc.stderr and f"Chromium at {chromium}" in proc.stderr
    assert proc.stderr.count("\n") == 1

    _fake_programs(pg_root / "16" / "bin", "initdb", "pg_ctl", "postgres")
    proc = fakes.run(**env)
    assert proc.returncode != 0 and "initdb" not in proc.stderr and "Chromium" in proc.stderr

    _fake_programs(chromium.parent, chromium.name)
    proc = fakes.run(**env)
    assert proc.returncode == 0 and proc.stderr == ""
    assert fakes.calls("apt-get") == [] and fakes.calls("sudo") == []


def test_without_dpkg_postgres_on_path_is_enough(fakes: Fakes, tmp_path: Path) -> None:
    _fake_programs(fakes.bin, "initdb", "pg_ctl", "postgres")
    _fake_programs(tmp_path / "c", "chromium")
    proc = fakes.run(SYSTEM_DEPS_PG_ROOT=str(tmp_path / "none"),
                     SYSTEM_DEPS_CHROMIUM=str(tmp_path / "c" / "chromium"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_make_test_and_ci_run_call_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert test_rule.split("\n", 1)[0].split() == ["system-deps", "$(DEV_STAMP)"]
    assert "scripts/system-deps.sh" in makefile.split("\nsystem-deps:", 1)[1].split("\n\n")[0]
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/system-deps.sh" in ci and ci.rstrip().endswith("make test")
    assert os.access(REPO / ".ci" / "run", os.X_OK)
