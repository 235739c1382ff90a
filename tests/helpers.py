"""Test plumbing shared by several test modules (not collected: no test_ prefix)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def duckdb_locked(path: Path) -> Iterator[None]:
    """Another process holds the DuckDB file ``path`` open (DuckDB's lock: the store's outage)
    until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(path)!r})
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("\n", timeout=10)


def run_notebook(path: Path, extra: str | None = None, cwd: Path = REPO) -> tuple[Any, str]:
    """Execute a notebook in a fresh kernel (it inherits the environment), ``extra`` appended
    as a last cell; returns it and its printed text, after checking no cell raised."""
    nb = nbformat.read(path, as_version=4)
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()  # fmt: skip
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return nb, "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
