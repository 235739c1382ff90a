"""Bad paths on the command line are one-line errors naming the file (never a traceback), and a
held journal lock says what a change waits for, then gives up with a clear message."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kit.cli import args as args_
from kit.cli.main import main

REPO = Path(__file__).resolve().parent.parent


def refused(check, text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as err:
        check(text)
    return str(err.value)


def test_the_shared_checkers_name_the_file_and_the_fault(tmp_path: Path) -> None:
    good = tmp_path / "rules.toml"
    good.write_text("[entry]\n")
    latin = tmp_path / "latin.toml"
    latin.write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    missing = tmp_path / "nope.toml"
    assert args_.text_file(str(good)) == good
    assert refused(args_.text_file, str(tmp_path)) == f"{tmp_path}: is a directory, not a file"
    assert refused(args_.text_file, str(missing)) == f"{missing}: no such file"
    assert refused(args_.text_file, str(latin)).startswith(f"{latin}: not UTF-8 text")
    assert args_.input_file(str(latin)) == latin  # binary readers take any bytes
    assert refused(args_.input_dir, str(good)) == f"{good}: is a file, not a directory"
    assert refused(args_.output_file, str(tmp_path)) == f"{tmp_path}: is a directory, not a file"
    deep = tmp_path / "a" / "b.parquet"
    assert "the directory" in refused(args_.output_file, str(deep)) and str(deep) in refused(
        args_.output_file, str(deep)
    )
    assert args_.output_path(str(deep)) == deep  # export creates its directories
    assert refused(args_.output_dir, str(good)) == f"{good}: is a file, not a directory"
    assert args_.output_dir(str(tmp_path / "new" / "state")) == tmp_path / "new" / "state"
    assert "cannot be created" in refused(args_.output_dir, str(good / "state"))
    assert "whole number" in refused(args_.count, "0")


def refused_by_kit(capsys, *argv: str) -> str:
    """``kit ARGV`` in this process: exit status 2 and its one-line error."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's refusal of an argument
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_commands_name_the_bad_path_in_one_line(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "state.txt"
    a_file.write_text("not a directory")
    err = refused_by_kit(capsys, "run", "--auto", "--state", str(a_file))
    assert f"{a_file}: is a file, not a directory" in err
    err = refused_by_kit(capsys, "db", "export", "fills", str(tmp_path), "--db", "x.duckdb")
    assert f"{tmp_path}: is a directory, not a file" in err
    err = refused_by_kit(capsys, "run", "--auto", "--rules", str(tmp_path))
    assert str(tmp_path) in err and "directory" in err


ADD = ["positions", "add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-15", "--put",
       "5000", "--call", "5200", "--contracts", "1", "--credit", "4.20",
       "--at", "2024-03-12T10:00-04:00"]  # fmt: skip


def test_a_held_journal_lock_is_named_and_times_out(tmp_path: Path, capsys, caplog) -> None:
    journal = tmp_path / "j.json"
    lock = tmp_path / "j.json.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys
            f = open({str(lock)!r}, "a+b")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.write(f"{{os.getpid()}}\\n".encode()); f.flush()
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        err = refused_by_kit(capsys, *ADD, "--file", str(journal), "--wait", "0.5")
        said = f"waiting up to 0.5 s for the journal lock {lock} held by process {holder.pid}"
        assert said in caplog.text
        assert err.startswith("kit positions: error: ") and "gave up after 0.5 s" in err
        assert f"held by process {holder.pid}" in err
        assert not journal.exists()  # nothing was written
    finally:
        holder.communicate("\n", timeout=10)
    caplog.clear()
    assert main([*ADD, "--file", str(journal), "--wait", "0.5"]) == 0
    assert "m1" in capsys.readouterr().out and "waiting" not in caplog.text
