"""A progress bar that suits where the build runs: tqdm.auto's widget in a notebook, rich's bar in
a terminal, nothing when the output is a pipe or a log (a CI log full of redraws helps no one)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Literal

Mode = Literal["auto", "notebook", "terminal", "off"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where tqdm draws a widget."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def pick(mode: Mode = "auto") -> Mode:
    if mode != "auto":
        return mode
    if in_notebook():
        return "notebook"
    return "terminal" if sys.stderr.isatty() else "off"


class Progress:
    """``with Progress(total, "SPX sim") as bar: bar.advance(rows=...)`` on any front end."""

    def __init__(self, total: int, description: str, mode: Mode = "auto") -> None:
        self.total, self.description, self.mode = total, description, pick(mode)
        self.done = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "notebook":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.description, unit="day")
        elif self.mode == "terminal":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, note="")
        return self

    def advance(self, note: str = "") -> None:
        """One day done; ``note`` (e.g. the day and its rows) shows beside the bar."""
        self.done += 1
        if self.mode == "notebook":
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(1)
        elif self.mode == "terminal":
            self._bar.update(self._task, advance=1, note=note)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close() if self.mode == "notebook" else self._bar.stop()
