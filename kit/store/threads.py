"""The store writer's worker threads, at a lower CPU priority than the event loop.

The writer converts rows and waits on the database in threads so the desk's event loop never
does. With conversion and insert overlapping, those threads can keep both cores of a small
machine busy; the event loop (the desk's tick path) then waits for the scheduler, not for
the GIL. On Linux each worker thread lowers its own priority (``nice``, per thread), so the
loop wins every contest for a core and the store takes what is left: a day averages 12 rows/s,
a tick is waited on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def _lower(nice: int) -> None:
    if nice and sys.platform.startswith("linux"):  # elsewhere a thread id is not a target
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # pragma: no cover - a sandbox refusing it costs only priority
            log.debug("store: worker priority unchanged (%s)", exc)


def worker_pool(name: str, workers: int, nice: int) -> ThreadPoolExecutor:
    """Threads whose priority is ``nice`` steps below the process's (0: unchanged)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_lower,
                              initargs=(nice,))  # fmt: skip
